"""Each benchmark figure as one function that builds the real parts, warms up, and times them."""

from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import configs
from agents import build_agent, resolve_device
from configs import Config
from envs import make_env
from probes.fit import probe_fit_loss
from probes.observe import measure
from replay import Batch, ReplayBuffer, make_replay
from train import Trainer

PAGE = 4096

Clock = Callable[[], float]
"""Seconds, read before and after the timed work: `time.perf_counter` unless a test passes one
that counts known work."""


def resident_bytes() -> int:
    """This process's resident memory (Linux /proc)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def env_sps_raw(config: Config, steps: int, *, clock: Clock = time.perf_counter) -> float:
    """Vector-env steps/s (summed over envs) with random actions, the training env settings:
    num_envs x calls / seconds of the calls."""
    env, spec, _ = make_env(config.env.id, config.env.num_envs, 0, config.env)
    rng = np.random.default_rng(0)
    actions = [rng.integers(spec.num_actions, size=config.env.num_envs) for _ in range(64)]
    try:
        for i in range(20):
            env.step(actions[i % 64])
        start = clock()
        calls = max(steps // config.env.num_envs, 1)
        for i in range(calls):
            env.step(actions[i % 64])
        return calls * config.env.num_envs / (clock() - start)
    finally:
        env.close()


def fixed_batch(spec, batch_size: int, device: torch.device) -> Batch:
    """A replay-shaped batch held in memory (on the learner's device)."""
    g = torch.Generator().manual_seed(0)
    shape = (batch_size, *spec.obs_shape)
    if spec.obs_dtype == np.uint8:
        obs = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    else:
        obs = torch.randn(shape, generator=g)
    batch = Batch(
        obs,
        torch.randint(0, spec.num_actions, (batch_size,), generator=g),
        torch.randn(batch_size, generator=g),
        torch.full((batch_size,), 0.99),
        obs.flip(0),
    )
    return batch.to(device)


def learner_ups_raw(
    configs_by_name: dict[str, Config],
    updates: int,
    rounds: int = 5,
    *,
    clock: Clock = time.perf_counter,
) -> dict:
    """Updates/s of the bare learner per config: same network, loss and optimiser, one fixed batch
    in memory. The configs take turns in short rounds and each keeps its median round, so that
    drift in the machine's speed hits them all alike."""
    learners = {name: bare_learner(config) for name, config in configs_by_name.items()}
    times: dict[str, list[float]] = {name: [] for name in learners}
    per_round = max(updates // rounds, 1)
    for _ in range(rounds):
        for name, (agent, batch) in learners.items():
            start = clock()
            for _ in range(per_round):
                agent.update(batch)
            synchronize(agent.device)
            times[name].append(clock() - start)
    return {name: per_round / float(np.median(t)) for name, t in times.items()}


def bare_learner(config: Config) -> tuple:
    """An agent and a fixed batch on its device, warmed up."""
    env, spec, _ = make_env(config.env.id, 1, 0, config.env)
    env.close()
    agent = build_agent(config, spec, resolve_device(config.train.device))
    batch = fixed_batch(spec, config.agent.batch_size, agent.device)
    for _ in range(5):
        agent.update(batch)
    return agent, batch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paired_loop(
    config: Config, steps: int, updates: int, rounds: int = 5, *, clock: Clock = time.perf_counter
) -> dict[str, float]:
    """The steps/s of the real training loop (acting, env, replay, updates, logging, target
    updates; probes off, they have their own figure) and the bare learner's updates/s, timed in
    alternating rounds after the warm-up, so that drift in the machine's speed (on a shared
    2-core VM, ±20% over minutes) hits both alike. Returns the medians over rounds of
    `train_sps`, `learner_ups` and `loop_efficiency`: per round, steps/s over the learner's bound
    train_interval x updates/s."""
    agent, batch = bare_learner(config)
    steps, updates = max(steps // rounds, 1), max(updates // rounds, 1)  # per round
    per_round = {"train_sps": [], "learner_ups": [], "loop_efficiency": []}
    with warmed_trainer(config) as trainer:
        for _ in range(rounds):
            sps = timed_steps(trainer, steps, clock=clock)
            start = clock()
            for _ in range(updates):
                agent.update(batch)
            synchronize(agent.device)
            ups = updates / (clock() - start)
            per_round["train_sps"].append(sps)
            per_round["learner_ups"].append(ups)
            per_round["loop_efficiency"].append(sps / (config.agent.train_interval * ups))
    return {name: float(np.median(values)) for name, values in per_round.items()}


@contextlib.contextmanager
def warmed_trainer(config: Config) -> Iterator[Trainer]:
    """A Trainer (probes off) past its warm-up and its first updates, in a temporary directory.
    ε is at its final value from the end of the warm-up, so the loop acts greedily (one forward
    pass a step) as in most of training, not at the near-1 ε of a decay's start."""
    agent = replace(config.agent, epsilon_decay_steps=1)
    config = replace(config, agent=agent, probes=replace(config.probes, enabled=False))
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        trainer = Trainer([(config, Path(tmp), None)])
        try:
            timed_steps(trainer, config.agent.learning_starts + 4 * config.agent.train_interval)
            yield trainer
        finally:
            for run in trainer.runs:
                run.close()


def timed_steps(trainer: Trainer, steps: int, *, clock: Clock = time.perf_counter) -> float:
    """Env steps/s of the training loop over the next `steps` steps (or a few more: whole
    iterations), summed over its seeds: agent steps taken (Trainer.steps) / seconds of those
    iterations."""
    start, first = clock(), trainer.steps()
    while trainer.steps() < first + steps:
        trainer.iteration()
        trainer.periodic()
    synchronize(trainer.group.device)
    return (trainer.steps() - first) / (clock() - start)


def fill_replay(config: Config, capacity: int, transitions: int, pool: np.ndarray) -> ReplayBuffer:
    """A replay buffer with `transitions` Atari-shaped transitions added the ordinary way, episodes
    of 2,000 steps, frames from `pool` [P, num_envs, 4, 84, 84]."""
    num_envs = pool.shape[1]
    buffer = make_replay(
        replace(config.replay, capacity=capacity),
        num_envs,
        (4, 84, 84),
        np.dtype(np.uint8),
        frame_stack=4,
        n_step=config.agent.n_step,
        gamma=config.agent.gamma,
        seed=0,
    )
    actions, rewards = np.zeros(num_envs, np.int64), np.ones(num_envs, np.float32)
    for t in range(transitions // num_envs):
        done = np.full(num_envs, t % 2000 == 1999)
        obs, next_obs = pool[t % len(pool)], pool[(t + 1) % len(pool)]
        buffer.add(obs, actions, rewards, next_obs, done, np.zeros_like(done))
    return buffer


def replay_figures(config: Config, capacity: int, transitions: int) -> dict[str, float]:
    """Resident bytes per stored transition, microseconds per batch-32 sample and per priority
    update of that batch (a no-op for uniform replay), median of 500."""
    pool = np.random.default_rng(0).integers(0, 256, size=(16, 8, 4, 84, 84), dtype=np.uint8)
    before = resident_bytes()  # the frame pool is resident already and not counted
    buffer = fill_replay(config, capacity, transitions, pool)
    used = resident_bytes() - before
    priorities = torch.rand(500, 32, generator=torch.Generator().manual_seed(0)) * 3
    for _ in range(50):
        buffer.sample(32)
    sample_times, update_times = [], []
    for i in range(500):
        start = time.perf_counter()
        batch = buffer.sample(32)
        middle = time.perf_counter()
        buffer.update_priorities(batch.index, priorities[i])
        update_times.append(time.perf_counter() - middle)
        sample_times.append(middle - start)
    return {
        "replay_bytes_per_transition": used / len(buffer),  # per transition held, not added
        "replay_sample_us": float(np.median(sample_times)) * 1e6,
        "priority_update_us": float(np.median(update_times)) * 1e6,
    }


def probe_seconds(
    config: Config, *, fit: bool = True, clock: Clock = time.perf_counter
) -> tuple[float, float]:
    """(seconds of one `measure`, seconds of one `probe_fit_loss` or 0 without `fit`) at the
    configured sizes, each timed once after a warm-up `measure`."""
    env, spec, _ = make_env(config.env.id, 1, 0, config.env)
    env.close()
    device = resolve_device(config.train.device)
    agent = build_agent(config, spec, device)
    states = fixed_batch(spec, config.probes.batch_size, device).obs
    kwargs = {"ntk_batch": config.probes.ntk_batch, "ntk_readout": agent.online.q_values}
    measure(agent.online, states, **kwargs)
    start = clock()
    measure(agent.online, states, **kwargs)
    measured = clock() - start
    if not fit:
        return measured, 0.0
    start = clock()
    probe_fit_loss(agent.online, states, steps=config.probes.fit_steps)
    return measured, clock() - start


def probe_overhead(config: Config, sps: float, *, clock: Clock = time.perf_counter) -> float:
    """Share of training wall time spent in probes at the configured intervals, from the seconds
    m of one `measure` and f of one `probe_fit_loss` (0 when fit_interval is 0) and the training
    time 1/sps of a step (probes off). ProbeSchedule measures the network every I = interval
    steps, fits it every F = fit_interval steps, and on each new probe batch measures and fits
    the initial network too: at the first probe step R = refresh_interval or more after the last
    draw, so every D = I·⌈R/I⌉ steps (fit steps being probe steps, F a multiple of I as in every
    preset). Per step, probes cost

        c = m/I + f/F + (m + f)/D,    and the share is c / (c + 1/sps)."""
    measured, fitted = probe_seconds(config, fit=config.probes.fit_interval > 0, clock=clock)
    p = config.probes
    redraw = p.interval * math.ceil(p.refresh_interval / p.interval)  # D
    per_step = measured / p.interval + (measured + fitted) / redraw
    if p.fit_interval:
        per_step += fitted / p.fit_interval
    return per_step / (per_step + 1.0 / sps)


def resolve(env: str, loss: str, assignments: list[str], *, variant: str | None = None) -> Config:
    """The defaults (or `variant`'s options) with `loss` as the value loss, on `env`."""
    overrides = {"env": {"id": env}, "agent": {"loss": loss}}
    return configs.resolve(variant=variant, overrides=overrides, assignments=assignments)


def timed(call: Callable[[], object], repeats: int, *, clock: Clock = time.perf_counter) -> float:
    """Median microseconds of one call, over `repeats` calls after two warm-up calls."""
    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        start = clock()
        call()
        times.append(clock() - start)
    return float(np.median(times)) * 1e6


def host_breakdown(
    config: Config, repeats: int, *, clock: Clock = time.perf_counter
) -> dict[str, float]:
    """Microseconds per agent step of each part of the training loop, each timed alone on the real
    parts of a warmed-up run: acting (one batched greedy forward over the vector envs), the env
    step and the replay add, and, once per `train_interval` steps, the replay
    sample and the update: a call's median µs over num_envs for the first three (one call serves
    every env), over train_interval for the last two (one call per train_interval agent steps).
    On a GPU the update runs on the device while the host does the rest, so
    `host_us` (all but the update) bounds steps/s from above: `host_ceiling_sps` = 1e6 / host_us."""
    config = replace(config, probes=replace(config.probes, enabled=False))
    num_envs, a = config.env.num_envs, config.agent
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        trainer = Trainer([(config, Path(tmp), None)])
        run = trainer.runs[0]
        try:
            while run.step < a.learning_starts + a.batch_size:
                trainer.iteration()
            agent, obs, replay, env = run.agent, run.obs, run.replay, run.env
            actions = agent.act(obs, 0.0)
            next_obs, rewards, terminated, truncated, _ = env.step(actions)
            batch = replay.sample(a.batch_size)
            parts = {
                "act": timed(lambda: agent.act(obs, 0.0), repeats, clock=clock) / num_envs,
                "env_step": timed(lambda: env.step(actions), repeats, clock=clock) / num_envs,
                "replay_add": timed(
                    lambda: replay.add(obs, actions, rewards, next_obs, terminated, truncated),
                    repeats,
                    clock=clock,
                )
                / num_envs,
                "sample": timed(lambda: replay.sample(a.batch_size), repeats, clock=clock)
                / a.train_interval,
                "update": timed(lambda: agent.update(batch), max(repeats // 10, 3), clock=clock)
                / a.train_interval,
            }
        finally:
            run.close()
    parts["host_us"] = sum(v for k, v in parts.items() if k != "update")
    parts["host_ceiling_sps"] = 1e6 / parts["host_us"]
    return parts


def loop_ceiling(parts: dict[str, float], num_envs: int, interval: int) -> float:
    """The highest `loop_efficiency` a synchronous loop reaches with these parts (µs per agent
    step, as `host_breakdown` gives them) on one device that both learns and acts (a CPU): the
    learner's time over the learner's plus the host work that cannot run beside it.

    Acting, the replay add and the sample wait for the update, since the next action needs the
    updated network; the env step runs beside the update in the share f = min(1, num_envs /
    interval) of loop iterations that update, and alone in the rest. So

        ceiling = update / (update + act + replay_add + sample + (1 − f) · env_step)."""
    overlapped = min(1.0, num_envs / interval)
    waiting = parts["act"] + parts["replay_add"] + parts["sample"]
    learner = parts["update"]
    return learner / (learner + waiting + (1.0 - overlapped) * parts["env_step"])


def memory_by_capacity(config: Config, capacities: list[int]) -> dict[int, float]:
    """Resident GB of a replay buffer filled to each capacity with Atari frames (the largest part
    of a run's memory; the networks and optimiser add about 30 MB). A process that freed memory
    before may refill it without growing, so give it the largest capacity first."""
    pool = np.random.default_rng(0).integers(0, 256, size=(16, 1, 4, 84, 84), dtype=np.uint8)
    result = {}
    for capacity in capacities:
        before = resident_bytes()
        buffer = fill_replay(config, capacity, capacity, pool)
        result[capacity] = (resident_bytes() - before) / 1e9
        del buffer
    return result


def probe_cost(
    config: Config, batches: list[int], ntk_batches: list[int], *, clock: Clock = time.perf_counter
) -> dict[str, float]:
    """Seconds of one probe measurement per probe batch (NTK at the configured size), and per NTK
    batch (probe batch as configured)."""
    result = {}
    for size in batches:
        sized = replace(config, probes=replace(config.probes, batch_size=size))
        result[f"probe_s/batch={size}"] = probe_seconds(sized, fit=False, clock=clock)[0]
    for size in ntk_batches:
        sized = replace(config, probes=replace(config.probes, ntk_batch=size))
        result[f"probe_s/ntk={size}"] = probe_seconds(sized, fit=False, clock=clock)[0]
    return result


KERNEL_PROBE = """
import torch
x = torch.randn(32, 4, 84, 84).contiguous(memory_format=torch.channels_last)
conv = torch.nn.Conv2d(4, 32, 8, 4).to(memory_format=torch.channels_last)
conv(x)
with torch.autocast("cpu", dtype=torch.bfloat16):
    conv(x)
"""


ATEN_BF16 = "ATen's reference kernel (not oneDNN)"


def onednn_kernels() -> dict[str, str]:
    """The oneDNN implementation that runs the first Nature-CNN convolution in float32 and under
    bfloat16 autocast on this CPU, e.g. `brg_conv_fwd:avx512_core_bf16` (native bf16 dot products)
    or `brg_conv_fwd:avx512_core_amx` (AMX tiles); a CPU without either emulates bf16 in fp32.
    Below AVX-512, torch hands bf16 convolutions to its own reference kernel, not to oneDNN,
    and "bf16" says so. Read from oneDNN's verbose log of a fresh interpreter (the flag is read
    at start-up)."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    log = subprocess.run(
        [sys.executable, "-c", KERNEL_PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    kernels = {"bf16": ATEN_BF16}
    for line in log.splitlines():
        fields = line.split(",")  # ..., exec, cpu, convolution, implementation, prop, "src:f32:..."
        if fields[3:6] == ["exec", "cpu", "convolution"]:
            source_type = fields[8].split()[0].split(":")[1]  # f32 or bf16
            kernels["fp32" if source_type == "f32" else source_type] = fields[6]
    return kernels
