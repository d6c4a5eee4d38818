"""This suite's training loop against CleanRL's `dqn_atari.py`, side by side on one machine:
`python -m benchmarks.versus_cleanrl --cleanrl DIR --cleanrl-python PY [--rounds 2] [--json FILE]`.

The protocol of the performance issue: Breakout, 12,000 agent steps, learning from step 2,000,
replay 20,000, batch 32, one update every 4 steps, acting at ε 0.01 once learning starts (CleanRL's
schedule is there by then; the suite is told so), everything else at each program's defaults.
Steps/s are read from the TD-loss events' wall-clock timestamps from step 3,000 on, so start-up,
warm-up and the final save are not counted; peak RSS is the child's own (wait4). The programs take
turns, `--rounds` times, and each keeps its median, so that drift in the machine hits all alike.

CleanRL is not a dependency: DIR holds `dqn_atari.py` and `cleanrl_utils/` from a checkout, and PY
is a Python with its requirements (gymnasium 0.29, ale-py, opencv, tyro, tensorboard, torch).
With ale-py 0.9 that Python must import ale_py at start-up to register the Atari ids, e.g. a line
`import ale_py` in a .pth file of its site-packages (CleanRL's script does not import it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evaluate import write_json

STEPS, LEARNING_STARTS, REPLAY = 12_000, 2_000, 20_000
TIMED_FROM = 3_000
"""Both programs are timed from their first TD-loss event at or after this step to their last:
the suite logs losses every 1,000 steps (its first at 3,000), CleanRL every 100 (its first at
2,100), so one window is taken for both."""


def cleanrl_command(python: str, cleanrl: Path, logdir: Path) -> tuple[list[str], Path]:
    """CleanRL's command line for the protocol, and the directory it runs in (it logs to ./runs)."""
    script = [
        python, str(cleanrl / "dqn_atari.py"), "--env-id", "BreakoutNoFrameskip-v4",
        "--total-timesteps", str(STEPS), "--learning-starts", str(LEARNING_STARTS),
        "--buffer-size", str(REPLAY), "--no-cuda",
    ]  # fmt: skip
    return script, logdir


def suite_command(logdir: Path, extra: list[str]) -> tuple[list[str], Path]:
    """This suite's command line for the protocol (its defaults otherwise). ε is at its final 0.01
    once learning starts, as CleanRL's is by then (it decays over the first 10% of the steps), so
    that both act greedily, one forward pass a step, in the timed part: with the suite's own
    250,000-step decay ε would stay near 1 and skip most acting forwards."""
    sets = [
        f"train.total_steps={STEPS}", f"agent.learning_starts={LEARNING_STARTS}",
        f"replay.capacity={REPLAY}", "agent.epsilon_decay_steps=1", *extra,
    ]  # fmt: skip
    argv = [sys.executable, "train.py", "--env", "Breakout", "--logdir", str(logdir)]
    return argv + [arg for s in sets for arg in ("--set", s)], Path(__file__).resolve().parents[1]


def timed_run(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run a training program to the end; its peak resident memory in MB."""
    with subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"{argv[1]} failed ({proc.returncode}):\n{proc.stderr.read()[-2000:]}")
    return usage.ru_maxrss / 1024  # Linux reports kilobytes


def loss_rate(logdir: Path, start: int = TIMED_FROM) -> float:
    """Agent steps/s between the first `losses/td_loss` event at or after step `start` and the
    last one of the run."""
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    if "losses/td_loss" not in events.Tags()["scalars"]:
        (run,) = [p for p in logdir.rglob("events.out.tfevents.*")]
        return loss_rate(run.parent, start)
    loss = [e for e in events.Scalars("losses/td_loss") if e.step >= start]
    return (loss[-1].step - loss[0].step) / (loss[-1].wall_time - loss[0].wall_time)


def measure(programs: dict[str, tuple], rounds: int) -> dict[str, dict[str, float]]:
    """Median steps/s and peak RSS per program, the programs taking turns each round."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    rates: dict[str, list[float]] = {name: [] for name in programs}
    memory: dict[str, list[float]] = {name: [] for name in programs}
    for round_ in range(rounds):
        for name, make in programs.items():
            with tempfile.TemporaryDirectory() as tmp:
                argv, cwd = make(Path(tmp))
                memory[name].append(timed_run(argv, cwd, env))
                rates[name].append(loss_rate(Path(tmp)))
            print(f"round {round_ + 1}: {name}: {rates[name][-1]:.1f} steps/s", file=sys.stderr)
    return {
        name: {"steps_per_s": float(np.median(rates[name])), "peak_rss_mb": max(memory[name]),
               "runs": rates[name]}
        for name in programs
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cleanrl", type=Path, required=True, help="folder with dqn_atari.py")
    p.add_argument("--cleanrl-python", required=True, help="a Python with CleanRL's requirements")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not (args.cleanrl / "dqn_atari.py").is_file():
        print(f"error: --cleanrl {args.cleanrl} holds no dqn_atari.py.", file=sys.stderr)
        return 2
    programs = {
        "cleanrl": lambda d: cleanrl_command(args.cleanrl_python, args.cleanrl.resolve(), d),
        "suite": lambda d: suite_command(d, []),
        "suite, nchw": lambda d: suite_command(d, ["train.channels_last=false"]),
        "suite, amp": lambda d: suite_command(d, ["train.amp=true"]),
    }
    results = measure(programs, args.rounds)
    base = results["cleanrl"]["steps_per_s"]
    print("| | steps/s | × CleanRL | peak RSS |\n|---|---|---|---|")
    for name, r in results.items():
        ratio = r["steps_per_s"] / base
        print(f"| {name} | {r['steps_per_s']:.1f} | {ratio:.2f} | {r['peak_rss_mb']:.0f} MB |")
    return write_json(args.json, results) if args.json else 0


if __name__ == "__main__":
    sys.exit(main())
