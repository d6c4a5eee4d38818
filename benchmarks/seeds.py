"""Many seeds in one process against as many single-seed processes on the same cores:
`python -m benchmarks --seeds 1,2,4,8,16`.

For each workload (CartPole with the classic MLP, MinAtar Breakout with its CNN, Pong with the
Nature CNN) and each K: the aggregate agent steps/s (summed over seeds) of one K-seed training
process using every core, and of K single-seed processes started together with one thread each,
timed over the same number of steps per seed once every process is past its warm-up; and the
resident memory per seed. Probes, evaluations and checkpoints are off: they have their own
figures. Reported, never asserted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import configs
from benchmarks.figures import resident_bytes, synchronize
from configs import Config
from train import Trainer
from training.launch import with_seed

WORKLOADS = {
    "classic": ("CartPole-v1", "classic"),
    "minatar": ("MinAtar/Breakout", "minatar"),
    "nature_cnn": ("Pong", None),
}
"""name -> (env, preset): the three network sizes the issue names."""

STEPS = {"classic": 4000, "minatar": 2000, "nature_cnn": 400}
"""Timed agent steps per seed (halved by --quick)."""


def workload_config(name: str, threads: int) -> Config:
    """The workload's config with a short warm-up and nothing but the loop itself."""
    env, preset = WORKLOADS[name]
    sets = [
        "probes.enabled=false",
        "eval.interval=0",
        "train.checkpoint_interval=100000000",
        f"train.threads={threads}",
        "agent.learning_starts=1000",
        "agent.epsilon_decay_steps=1",  # greedy acting (one forward a step), as most of training
        "replay.capacity=100000",
    ]
    return configs.resolve(preset=preset, overrides={"env": {"id": env}}, assignments=sets)


def warmed(config: Config, seeds: list[int], tmp: Path) -> Trainer:
    """A Trainer of these seeds past the warm-up and its first updates."""
    launches = [(with_seed(config, seed), tmp / f"s{seed}", None) for seed in seeds]
    for _, run_dir, _ in launches:
        run_dir.mkdir()
    trainer = Trainer(launches)
    start = config.agent.learning_starts + 8 * config.agent.train_interval
    while min(run.step for run in trainer.runs) < start:
        step(trainer)
    return trainer


def step(trainer: Trainer) -> None:
    trainer.iteration()
    trainer.periodic()


def timed_loop(trainer: Trainer, steps: int) -> float:
    """Aggregate agent steps/s over the next `steps` steps of every seed."""
    first = [run.step for run in trainer.runs]
    start = time.perf_counter()
    while min(run.step - f for run, f in zip(trainer.runs, first, strict=True)) < steps:
        step(trainer)
    synchronize(trainer.group.device)
    return (trainer.steps() - sum(first)) / (time.perf_counter() - start)


def grouped(name: str, seeds: int, steps: int) -> dict[str, float]:
    """One process of `seeds` seeds on every core."""
    config = workload_config(name, threads=os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        before = resident_bytes()
        trainer = warmed(config, list(range(1, seeds + 1)), Path(tmp))
        try:
            sps = timed_loop(trainer, steps)
            memory = (resident_bytes() - before) / seeds
        finally:
            for run in trainer.runs:
                run.close()
    return {"sps": sps, "mb_per_seed": memory / 2**20}


def separate(name: str, seeds: int, steps: int) -> dict[str, float]:
    """`seeds` single-seed processes of one thread each, timed together: each warms up, waits
    for the others, then times its steps; the aggregate is the sum of their steps/s."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        argv = [sys.executable, "-m", "benchmarks.seeds", name, str(steps), tmp]
        children = [subprocess.Popen([*argv, str(seed)]) for seed in range(1, seeds + 1)]
        while len(list(folder.glob("ready-*"))) < seeds:
            if any(child.poll() not in (None, 0) for child in children):
                raise RuntimeError(f"a single-seed benchmark process of {name} failed")
            time.sleep(0.05)
        (folder / "go").touch()
        for child in children:
            child.wait()
        results = [json.loads(p.read_text()) for p in folder.glob("result-*.json")]
    return {
        "sps": sum(r["sps"] for r in results),
        "mb_per_seed": sum(r["mb"] for r in results) / len(results),
    }


def child(name: str, steps: int, folder: Path, seed: int) -> None:
    """One single-seed process of `separate`."""
    torch.set_num_threads(1)
    config = workload_config(name, threads=1)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        before = resident_bytes()
        trainer = warmed(config, [seed], Path(tmp))
        (folder / f"ready-{seed}").touch()
        while not (folder / "go").exists():
            time.sleep(0.01)
        sps = timed_loop(trainer, steps)
        memory = (resident_bytes() - before) / 2**20
        for run in trainer.runs:
            run.close()
    (folder / f"result-{seed}.json").write_text(json.dumps({"sps": sps, "mb": memory}))


def seed_scaling(counts: list[int], *, quick: bool) -> dict[str, float]:
    """{workload/K=k/grouped_sps, .../separate_sps, .../ratio, .../mb_per_seed...} for each
    workload and K."""
    results: dict[str, float] = {}
    for name in WORKLOADS:
        steps = STEPS[name] // (2 if quick else 1)
        for k in counts:
            together, apart = grouped(name, k, steps), separate(name, k, steps)
            prefix = f"seeds/{name}/K={k}"
            results[f"{prefix}/grouped_sps"] = together["sps"]
            results[f"{prefix}/separate_sps"] = apart["sps"]
            results[f"{prefix}/ratio"] = together["sps"] / apart["sps"]
            results[f"{prefix}/grouped_mb_per_seed"] = together["mb_per_seed"]
            results[f"{prefix}/separate_mb_per_seed"] = apart["mb_per_seed"]
            print(
                f"{name:10s} K={k:<3d} one process {together['sps']:8.0f} steps/s "
                f"({together['mb_per_seed']:6.0f} MB/seed)   {k} processes "
                f"{apart['sps']:8.0f} steps/s ({apart['mb_per_seed']:6.0f} MB/seed)   "
                f"ratio {together['sps'] / apart['sps']:.2f}",
                flush=True,
            )
    return results


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
