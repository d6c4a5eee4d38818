"""Score a checkpoint under the training protocol (sticky actions included) with ε = eval_epsilon.

    python evaluate.py runs/<run> --episodes 10 --json scores.json

Prints each game's raw score, the mean and median and, for Atari, the human-normalised mean
(score − random) / (human − random).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

import configs
from agents import agent_from_checkpoint, find_checkpoint, load_checkpoint, resolve_device
from agents.evaluation import best_path
from analysis.video import record_run
from configs import UserError
from envs import human_normalized, make_env, play_episodes
from training.tracking import Tracking, add_flags, check_video_target, log_video


def evaluate(
    path: Path, episodes: int, *, seed: int = 10_000, device: str = "auto", num_envs: int = 8
) -> dict:
    """Play `episodes` games with the checkpoint's online network and summarise the raw scores."""
    checkpoint_file = find_checkpoint(path)
    checkpoint = load_checkpoint(checkpoint_file)
    config = configs.from_dict(checkpoint["config"])
    step = int(checkpoint["step"])  # continual MinAtar: the game trained then
    env, spec, obs = make_env(
        config.env.id, min(num_envs, episodes), seed, config.env, step=step, switching=False
    )
    try:
        agent = agent_from_checkpoint(checkpoint, config, spec, device=resolve_device(device))
        agent.online.eval()
        rng = np.random.default_rng(seed)  # ε-noise follows --seed, like the envs
        epsilon = config.agent.eval_epsilon
        games = play_episodes(
            env,
            obs,
            lambda o: agent.act(o, epsilon, rng=rng),
            episodes,
            life_loss_terminal=config.env.terminal_on_life_loss,
        )
    finally:
        env.close()
    scores = [g.score for g in games]
    result = {
        "checkpoint": str(checkpoint_file),
        "env": spec.name,
        "variant": config.variant,
        "step": step,
        "epsilon": epsilon,
        "returns": scores,
        "lengths": [g.length for g in games],
        "mean": statistics.fmean(scores),
        "median": statistics.median(scores),
    }
    if spec.is_atari:
        result["human_normalized"] = human_normalized(spec.name, result["mean"])
    return result


def best_checkpoint(run_dir: Path) -> Path:
    """The run's best.pt; a UserError says how to get one when the run has none."""
    path = best_path(run_dir)
    if not path.is_file():
        raise UserError(
            f"{run_dir} holds no best.pt: --best needs a run directory trained with evaluation "
            "phases (eval.interval > 0, e.g. --set eval.interval=50000; on in the classic preset)."
        )
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("path", help="a run directory (its newest checkpoint) or a checkpoint file")
    p.add_argument(
        "--best",
        action="store_true",
        help="score the run's best evaluated network (best.pt, kept by eval.interval) instead",
    )
    p.add_argument("--episodes", type=int, default=10, help="games to play (default 10)")
    p.add_argument("--seed", type=int, default=10_000, help="environment seed (default 10000)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--num-envs", type=int, default=8, help="games played at once (default 8)")
    p.add_argument("--json", metavar="FILE", help="also write the results as a JSON object")
    p.add_argument("--video", metavar="FILE", help="also record one game as an MP4 of the screen")
    add_flags(p)  # --track: the --video goes to the run's W&B run too
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.episodes < 1 or args.num_envs < 1:
            raise UserError(
                f"--episodes ({args.episodes}) and --num-envs ({args.num_envs}) must be >= 1."
            )
        tracking = Tracking.from_args(args)
        path = Path(args.path)
        check_video_target(tracking, args.video, path if path.is_dir() else path.parent)
        result = evaluate(
            best_checkpoint(Path(args.path)) if args.best else Path(args.path),
            args.episodes,
            seed=args.seed,
            device=args.device,
            num_envs=args.num_envs,
        )
        if args.video:
            checkpoint = Path(result["checkpoint"])
            record_run(checkpoint, Path(args.video), seed=args.seed, device=args.device)
            if tracking:
                log_video(tracking, checkpoint.parent, Path(args.video), result["step"])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for index, (score, length) in enumerate(zip(result["returns"], result["lengths"], strict=True)):
        print(f"episode {index + 1:3d}: score {score:10.1f}  ({length} steps)")
    print(
        f"mean {result['mean']:.2f}  median {result['median']:.2f}  over {args.episodes} games "
        f"of {result['env']} ({result['variant']}, step {result['step']}, ε = {result['epsilon']})"
    )
    if result.get("human_normalized") is not None:
        print(f"human-normalised mean: {result['human_normalized']:.3f}")
    if args.json:
        return write_json(Path(args.json), result)
    return 0


def write_json(path: Path, data: dict) -> int:
    """Write `data` as JSON; a bad path is one clear line and exit status 2."""
    try:
        path.write_text(json.dumps(data, indent=2))
    except OSError as error:
        print(f"error: cannot write {path}: {error.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
