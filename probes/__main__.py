"""Probe saved networks after the fact: `python -m probes RUN_OR_CHECKPOINT [MORE ...]`.

States come from each checkpoint's own game under its training protocol (for a continual run,
the game its step was training on), played by a seeded uniformly random policy and kept once
each, so checkpoints of the same game (e.g. two variants) are measured on exactly the same
distinct states and their columns compare directly. Noisy networks are measured on their mean
weights (eval mode), so a checkpoint gives the same table every time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import configs
from agents import agent_from_checkpoint, find_checkpoint, load_checkpoint
from configs import UserError
from envs import make_env
from evaluate import write_json
from probes.fit import probe_fit_loss
from probes.observe import measure


def collect_states(
    config: configs.Config, count: int, *, seed: int, step: int = 0
) -> tuple[np.ndarray, object]:
    """`count` distinct observations, every 4th of a random policy's steps in the game trained at
    `step`, a state seen before skipped (at most 64·count steps)."""
    env, spec, obs = make_env(config.env.id, 1, seed, config.env, step=step, switching=False)
    rng = np.random.default_rng(seed)
    states, seen = [], set()
    try:
        for t in range(64 * count):
            if t % 4 == 0 and obs[0].tobytes() not in seen:
                seen.add(obs[0].tobytes())
                states.append(obs[0])
                if len(states) == count:
                    break
            obs, *_ = env.step(rng.integers(spec.num_actions, size=1))
    finally:
        env.close()
    return np.stack(states), spec


def probe_checkpoint(path: Path, *, states: int, seed: int, fit: bool) -> dict[str, float]:
    checkpoint = load_checkpoint(find_checkpoint(path))
    config = configs.from_dict(checkpoint["config"])
    obs, spec = collect_states(config, states, seed=seed, step=int(checkpoint.get("step", 0)))
    agent = agent_from_checkpoint(checkpoint, config, spec, device=torch.device("cpu"))
    batch, sizes = torch.from_numpy(obs), config.probes  # the sizes training logged with
    ntk_batch = min(sizes.ntk_batch, states)
    figures = measure(agent.online, batch, ntk_batch=ntk_batch, ntk_readout=agent.online.q_values)
    if fit:
        figures["probe_fit_loss"] = probe_fit_loss(
            agent.online, batch, steps=sizes.fit_steps, seed=seed
        )
    return figures


def column_names(paths: list[str]) -> list[str]:
    """One name per path given; a path given again is `path (2)`, `path (3)`, ..."""
    names = []
    for path in paths:
        count = paths[: len(names)].count(path)
        names.append(path if count == 0 else f"{path} ({count + 1})")
    return names


def table(columns: dict[str, dict[str, float]]) -> str:
    keys = sorted({k for figures in columns.values() for k in figures})
    width = max(len(k) for k in keys)
    names = list(columns)
    lines = [f"{'probe':{width}s}  " + "  ".join(f"{n[-24:]:>24s}" for n in names)]
    for key in keys:
        cells = [columns[n].get(key) for n in names]
        lines.append(
            f"{key:{width}s}  "
            + "  ".join(f"{'-':>24s}" if v is None else f"{v:24.6g}" for v in cells)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "paths", nargs="+", help="run directories (newest checkpoint) or checkpoint files"
    )
    p.add_argument(
        "--states", type=int, default=256, help="states in the probe batch (default 256)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the states and of probe_fit_loss")
    p.add_argument("--fit", action="store_true", help="also measure probe_fit_loss (slower)")
    p.add_argument("--json", metavar="FILE", help="also write {path: {probe: value}} as JSON")
    args = p.parse_args(argv)
    try:
        if args.states < 2:
            raise UserError(f"--states {args.states} is too few; the probes need at least 2.")
        columns = {
            name: probe_checkpoint(Path(path), states=args.states, seed=args.seed, fit=args.fit)
            for name, path in zip(column_names(args.paths), args.paths, strict=True)
        }
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(columns))
    return write_json(Path(args.json), columns) if args.json else 0


if __name__ == "__main__":
    sys.exit(main())
