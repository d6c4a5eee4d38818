"""How reliably each value head learns CartPole under the `classic` preset, over seeds:
`python -m benchmarks.learning [--seeds 1,2,3,4,5] [--workers 2] [--json FILE]`; any other options
in place of the heads: `--heads dqn,redo,shrink_perturb,reset_head,inject,regen,crelu`.

Trains every head (option) alone and with ln+wd on each seed, then scores two networks of each
run with evaluate.py's protocol (20 games at eval_epsilon, evaluation seed 10,000): the final one
and the best one kept by the evaluation phases (best.pt). Prints a head × seed table of both. Too
slow for CI (about a minute a run on one core): its figures go into closing notes and the README.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import configs
import evaluate
import train

HEADS = ["huber", "mse", "c51", "two_hot", "hl_gauss"]
BAR = 150.0
"""CartPole's learning bar: a uniformly random policy averages about 22 steps."""


def learn(variant: str, seed: int, extra: tuple[str, ...] = ()) -> dict:
    """Train one classic run and score its final and best networks."""
    config = configs.resolve(
        preset="classic",
        variant=variant,
        overrides={"train": {"seed": seed}},
        assignments=["probes.enabled=false", *extra],
    )
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        run_dir = Path(tmp)
        train.Trainer([(config, run_dir, None)]).run()
        final = evaluate.evaluate(run_dir, 20, num_envs=4)["mean"]
        best = evaluate.evaluate(evaluate.best_checkpoint(run_dir), 20, num_envs=4)["mean"]
    return {"variant": variant, "seed": seed, "final": final, "best": best}


def table(results: list[dict], seeds: list[int], key: str) -> str:
    """Markdown rows: variant, one score per seed, and how many seeds clear the bar."""
    variants = list(dict.fromkeys(r["variant"] for r in results))
    score = {(r["variant"], r["seed"]): r[key] for r in results}
    lines = [
        f"| {key} | " + " | ".join(f"s{s}" for s in seeds) + f" | ≥ {BAR:g} |",
        "|---" * (len(seeds) + 2) + "|",
    ]
    for v in variants:
        row = [score[v, s] for s in seeds]
        cleared = f"{sum(x >= BAR for x in row)}/{len(seeds)}"
        lines.append(f"| {v} | " + " | ".join(f"{x:.1f}" for x in row) + f" | {cleared} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds")
    p.add_argument(
        "--heads", default=",".join(HEADS), help="comma-separated value heads or other options"
    )
    p.add_argument("--workers", type=int, default=2, help="runs trained at once")
    p.add_argument("--set", action="append", default=[], help="extra KEY=VALUE for every run")
    p.add_argument("--json", help="write the results as JSON")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    heads = args.heads.split(",")
    jobs = [(v, s) for h in heads for v in (h, f"{h}+ln+wd") for s in seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(learn, v, s, tuple(args.set)) for v, s in jobs]
        results = [f.result() for f in futures]
    print(table(results, seeds, "final"))
    print()
    print(table(results, seeds, "best"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
