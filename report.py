"""Compare variants across runs: learning curves, rliable aggregates and plasticity probes.

    python report.py runs/ --out report/ --baseline dqn [--videos] [--reference dopamine]

Reads what the runs already wrote (config.yaml, TensorBoard events, checkpoints) and writes
report/index.html, report/summary.json and PNG figures. Needs the [report] extra. Aggregates go
across human-normalised Atari games only; every other game is aggregated on its own. Runs are
grouped by variant and setting (how the config differs from the variant's own); directories
under a hidden folder, such as LOGDIR/.sweep/aside/, are listed and not counted.
With --reference dopamine[:AGENT,...], Dopamine's published training returns (Apache-2.0, built
from a clone of google/dopamine: README, Published baselines) are drawn behind every Atari curve
and set beside each Atari run's returns at matched agent steps (`python -m analysis.reference
GAME` prints them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.extras import require
from analysis.reference import AGENTS, DEFAULT_AGENTS, parse_spec
from configs.errors import UserError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="folder holding run directories")
    p.add_argument("--out", default="report", help="report folder (default report/)")
    p.add_argument(
        "--baseline",
        default="dqn",
        help="variant for P(improvement), or one label 'VARIANT [SETTING]' of the page where "
        "the variant ran under several settings (default dqn)",
    )
    p.add_argument("--videos", action="store_true", help="record one short clip per variant")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--reference",
        metavar="dopamine[:AGENT,...]",
        help="draw Dopamine's published returns behind Atari curves; AGENT: "
        f"{', '.join(AGENTS)} (default {', '.join(DEFAULT_AGENTS)})",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        require()
        from analysis.build import build_report
        from analysis.stats import Bootstrap

        if args.reps < 1:
            raise UserError(f"--reps ({args.reps}) must be >= 1.")
        reference = parse_spec(args.reference) if args.reference else ()
        report = build_report(
            Path(args.runs_dir),
            Path(args.out),
            baseline=args.baseline,
            videos=args.videos,
            bootstrap=Bootstrap(reps=args.reps, seed=args.seed),
            reference=reference,
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{len(report.finished)} finished and {len(report.partial)} partial run(s): "
        f"{Path(args.out) / 'index.html'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
