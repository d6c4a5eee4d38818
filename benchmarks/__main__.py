"""Throughput and memory of the suite's parts, side by side: `python -m benchmarks [--quick]`.

Prints one table and writes the same figures, with their conditions, as JSON (`--json FILE`).
Targets are for a 2-core CPU machine; they are reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks import figures, seeds
from configs import UserError
from evaluate import write_json

DEFAULT = "mse"
"""The default value loss (dqn: Dopamine's JAX DQN), the first head timed and the baseline."""
HEADS = [DEFAULT, "c51", "two_hot", "hl_gauss"]
TARGETS = {
    "loop_efficiency": (">=", 0.9),
    "replay_bytes_per_transition": ("<=", 7200),
    "replay_sample_us": ("<=", 300),
    "per_sample_cost": ("<=", 2.0),
    "probe_overhead": ("<=", 0.02),
    "distributional_learner_cost": ("<=", 0.15),
}


def sizes(quick: bool) -> dict[str, int]:
    """How long each figure runs; --quick stays under two minutes on 2 CPU cores."""
    if quick:
        return {
            "env_steps": 2000,
            "updates": 120,
            "train_steps": 1200,
            "warmup": 1000,
            "replay_fill": 200_000,
            "repeats": 50,
        }
    return {
        "env_steps": 10_000,
        "updates": 300,
        "train_steps": 3000,
        "warmup": 5000,
        "replay_fill": 1_000_000,
        "repeats": 200,
    }


def run(
    env: str, device: str, threads: int, quick: bool, envs: list[int], scaling: bool = False
) -> dict:
    n = sizes(quick)
    common = [
        f"train.device={device}",
        f"train.threads={threads}",
        f"agent.learning_starts={n['warmup']}",
        "replay.capacity=1000000",
    ]
    config = figures.resolve(env, DEFAULT, common)
    device_is_cpu = figures.resolve_device(device).type == "cpu"
    if threads:
        torch.set_num_threads(threads)
    results: dict = {
        "conditions": {
            "env": env,
            "device": str(figures.resolve_device(device)),
            "torch_threads": torch.get_num_threads(),
            "num_envs": config.env.num_envs,
            "batch_size": config.agent.batch_size,
            "train_interval": config.agent.train_interval,
            "replay_capacity": config.replay.capacity,
            "quick": quick,
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_conv_kernels": figures.onednn_kernels() if device_is_cpu else {},
        }
    }
    results["env_sps_raw"] = figures.env_sps_raw(config, n["env_steps"])
    head_configs = {head: figures.resolve(env, head, common) for head in HEADS}
    head_configs["rainbow"] = figures.resolve(env, "c51", common, variant="rainbow")
    head_configs["amp"] = figures.resolve(env, DEFAULT, [*common, "train.amp=true"])
    head_configs["nchw"] = figures.resolve(env, DEFAULT, [*common, "train.channels_last=false"])
    ups = figures.learner_ups_raw(head_configs, n["updates"])
    # Each loop timed in alternation with its learner: the machine's speed drifts over minutes.
    loops = {h: figures.paired_loop(head_configs[h], n["train_steps"], n["updates"]) for h in HEADS}
    for head in HEADS:
        results[f"learner_ups_raw/{head}"] = ups[head]
        results[f"train_sps/{head}"] = loops[head]["train_sps"]
    results["learner_ups_raw"] = results[f"learner_ups_raw/{DEFAULT}"]
    loop = loops[DEFAULT]
    results["train_sps"] = loop["train_sps"]
    results["learner_ups_paired"] = loop["learner_ups"]
    learner_bound = config.agent.train_interval * loop["learner_ups"]
    env_bound = results["env_sps_raw"] < learner_bound
    results["loop_bound"] = "env" if env_bound else "learner"
    results["loop_efficiency"] = (
        loop["train_sps"] / results["env_sps_raw"] if env_bound else loop["loop_efficiency"]
    )
    slowest = min(results[f"learner_ups_raw/{h}"] for h in HEADS[1:])
    results["distributional_learner_cost"] = results["learner_ups_raw"] / slowest - 1
    results["learner_ups_raw/rainbow"] = ups["rainbow"]
    results["rainbow_learner_cost"] = results["learner_ups_raw"] / ups["rainbow"] - 1
    # The layouts and precisions side by side (the default is NHWC fp32): which kernels ran is in
    # the conditions, since bf16 only pays where the CPU multiplies bf16 natively.
    results["learner_ups_raw/nchw"] = ups["nchw"]
    results["learner_ups_raw/amp"] = ups["amp"]
    results["amp_speedup"] = ups["amp"] / results["learner_ups_raw"]
    results.update(figures.replay_figures(config, config.replay.capacity, n["replay_fill"]))
    per = figures.resolve(env, DEFAULT, common, variant="per")
    per_figures = figures.replay_figures(per, config.replay.capacity, n["replay_fill"])
    results["replay_sample_us/per"] = per_figures["replay_sample_us"]
    results["priority_update_us/per"] = per_figures["priority_update_us"]
    results["per_sample_cost"] = results["replay_sample_us/per"] / results["replay_sample_us"]
    results["replay_filled"] = n["replay_fill"]
    default = figures.resolve(env, DEFAULT, [f"train.device={device}"])
    results["probe_overhead"] = figures.probe_overhead(default, results["train_sps"])
    interval = config.agent.train_interval
    parts = figures.host_breakdown(config, n["repeats"])
    for part, value in parts.items():
        results[f"host/{part}"] = value
    results["loop_efficiency_ceiling"] = figures.loop_ceiling(parts, config.env.num_envs, interval)
    for num_envs in envs:  # the same replay ratio: one update per train_interval env steps
        scaled = figures.resolve(env, DEFAULT, [*common, f"env.num_envs={num_envs}"])
        loop = figures.paired_loop(scaled, n["train_steps"], n["updates"])
        results[f"train_sps/envs={num_envs}"] = loop["train_sps"]
        results[f"loop_efficiency/envs={num_envs}"] = loop["loop_efficiency"]
        breakdown = figures.host_breakdown(scaled, n["repeats"])
        results[f"loop_ceiling/envs={num_envs}"] = figures.loop_ceiling(
            breakdown, num_envs, interval
        )
        results[f"host_us/envs={num_envs}"] = breakdown["host_us"]
        results[f"host_ceiling_sps/envs={num_envs}"] = breakdown["host_ceiling_sps"]
    if scaling:
        capacities = [100_000, 10_000] if quick else [1_000_000, 100_000]
        for capacity, gb in figures.memory_by_capacity(config, capacities).items():
            results[f"replay_resident_gb/capacity={capacity}"] = gb
        results.update(figures.probe_cost(default, [64, 128, 256, 512], [8, 16, 32, 64]))
    return results


def verdict(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    op, bound = TARGETS[key]
    ok = value >= bound if op == ">=" else value <= bound
    return f"{op} {bound:g}  {'ok' if ok else 'MISSED'}"


def table(results: dict) -> str:
    c = results["conditions"]
    lines = [
        f"device {c['device']} ({c['cpu']}), torch {c['torch']} with {c['torch_threads']} threads; "
        f"{c['env']}, {c['num_envs']} env(s), batch {c['batch_size']}, one update every "
        f"{c['train_interval']} steps, replay capacity {c['replay_capacity']:,}",
        f"{'figure':34s} {'value':>14s}  target",
    ]
    for key, value in results.items():
        if key == "conditions" or not isinstance(value, int | float):
            continue
        lines.append(f"{key:34s} {value:14.4g}  {verdict(key, value)}")
    lines.append(
        f"loop_efficiency bound: {results['loop_bound']} "
        "(min of env_sps_raw and train_interval x learner_ups_paired, the learner timed in "
        "alternation with the loop); loop_efficiency/envs=N against the learner's bound"
    )
    lines.append(
        "loop_efficiency_ceiling: the most a synchronous loop reaches with these parts, since "
        "acting waits for the update (benchmarks.figures.loop_ceiling)"
    )
    if c.get("onednn_conv_kernels"):
        kernels = ", ".join(f"{k}: {v}" for k, v in c["onednn_conv_kernels"].items())
        lines.append(f"CPU dispatch {c['cpu_capability']}; oneDNN convolutions: {kernels}")
    lines.append(
        f"replay figures from a 1M-capacity buffer holding {results['replay_filled']:,} transitions"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="short runs (under two minutes)")
    p.add_argument("--env", default="Pong", help="Atari game (default Pong)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the config default)")
    p.add_argument(
        "--envs",
        default="",
        metavar="N,N,...",
        help="also time train_sps with these numbers of vector envs, e.g. 1,4,16,64",
    )
    p.add_argument(
        "--scaling",
        action="store_true",
        help="also resident memory against replay capacity and probe time against its batches",
    )
    p.add_argument(
        "--seeds",
        metavar="K,K,...",
        help="instead, K seeds in one process against K single-seed processes (aggregate "
        "steps/s, memory per seed) for CartPole, MinAtar and Pong, e.g. 1,2,4,8,16",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        envs = parse_envs(args.envs)
        if args.seeds is not None:
            return seed_table(parse_envs(args.seeds, "--seeds"), args.quick, args.json, start)
        results = run(args.env, args.device, args.threads, args.quick, envs, args.scaling)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results["conditions"]["wall_seconds"] = time.perf_counter() - start
    print(table(results))
    return write_json(Path(args.json), results) if args.json else 0


def seed_table(counts: list[int], quick: bool, json_file: str | None, start: float) -> int:
    """The seeds-as-a-batch table (benchmarks.seeds), printed as it is measured."""
    results: dict = {
        "conditions": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "quick": quick,
        }
    }
    results.update(seeds.seed_scaling(counts, quick=quick))
    results["conditions"]["wall_seconds"] = time.perf_counter() - start
    return write_json(Path(json_file), results) if json_file else 0


def parse_envs(text: str, flag: str = "--envs") -> list[int]:
    """`1,4,16` -> [1, 4, 16]."""
    try:
        counts = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        counts = [0]
    if any(n < 1 for n in counts):
        raise UserError(f"{flag} '{text}' must be positive numbers joined by commas, e.g. 1,4,16.")
    return counts


if __name__ == "__main__":
    sys.exit(main())
