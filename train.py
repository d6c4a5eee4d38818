"""Train a DQN-family agent on an Atari game or a classic-control task.

    python train.py --env Pong --variant ln+wd+hl_gauss --seed 1
    python train.py --env MinAtar/Breakout --preset minatar --variant ln+wd --seeds 1-8
    python train.py --resume runs/pong__ln+wd+hl_gauss__s1__20261127-101500 --total-steps 20000000

Data flows one way: config -> envs, replay, network, agent, probes -> loop { act -> env.step ->
replay.add -> every k steps agent.update(replay.sample()) -> log } -> checkpoints. Several seeds
(--seeds) are one batch dimension of that loop: one acting forward and one update for all of them
(agents.group.SeedGroup), each seed with its own run (training.SeedRun) and run directory.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import configs
from agents import native_bf16, resolve_device
from agents.checkpoint import CheckpointWriteError, NonFiniteError
from agents.group import SeedGroup
from agents.losses import is_categorical
from configs import Config, UserError
from probes.schedule import crossed
from training.launch import SEED_GROUP, new_runs, resumed_runs
from training.seed_run import SeedRun
from training.tracking import Tracking, add_flags

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
NO_CRASH_SAVE = (CheckpointWriteError, NonFiniteError)
"""Errors after which a crash-save would fail again or save a diverged network."""


class Trainer:
    """The loop over the seeds of one process: act, step, store, update, periodic work. With one
    seed it is a single-seed run; with K, every seed's run is what it would be alone."""

    def __init__(
        self, launches: list[tuple[Config, Path, dict | None]], tracking: Tracking | None = None
    ) -> None:
        threads = launches[0][0].train.threads
        if threads:
            torch.set_num_threads(threads)
        self.runs = [SeedRun(*launch, tracking=tracking) for launch in launches]
        if len(self.runs) > 1:
            names = [{"run": r.run_dir.name, "seed": r.config.train.seed} for r in self.runs]
            for run in self.runs:
                run.extra = {SEED_GROUP: names}
        self.active = [r for r in self.runs if not r.done]
        self.group = self.regroup()
        self.diverged: dict[SeedRun, str] = {}
        """Seeds stopped by a NaN or Inf, with the error; the others train on."""
        self.bar: tqdm | None = None  # run()'s progress bar
        self.stop_signal: int | None = None
        self.closing = self.abandoned = False

    def run(self) -> int:
        """Train every seed to total_steps (or a signal), checkpoint, and return the exit status."""
        error = None
        previous = {sig: signal.signal(sig, self.request_stop) for sig in STOP_SIGNALS}
        self.bar = bar = tqdm(
            total=sum(r.config.train.total_steps for r in self.runs),
            initial=self.steps(),
            unit="step",
            dynamic_ncols=True,
            disable=None,
            mininterval=1.0,
        )
        try:
            while self.active and self.stop_signal is None:
                before = self.steps()
                self.iteration()
                bar.update(self.steps() - before)
                self.periodic()
        except KeyboardInterrupt:  # a second signal (request_stop): stop now, save nothing more
            self.abandoned = True
        except BaseException as raised:
            error = raised
            raise
        finally:
            self.shutdown(error, previous, bar)
        return self.report()

    def steps(self) -> int:
        return sum(r.step for r in self.runs)

    def iteration(self) -> None:
        """Act in every seed's envs, learn while the emulators run, then store what happened."""
        actions = self.group.act(
            np.stack([r.obs for r in self.active]), [r.epsilon() for r in self.active]
        )
        for run, chosen in zip(self.active, actions, strict=True):
            run.stepper.start(chosen)
        self.learn()
        for run, chosen in zip(self.active, actions, strict=True):
            run.record(chosen, run.stepper.wait())

    def learn(self) -> None:
        """The updates each seed owes, batched over the seeds that owe one in each round."""
        while True:
            batches = [run.next_batch() for run in self.active]
            if all(b is None for b in batches):
                break
            metrics = self.group.update(batches)
            changed = False
            for run, batch, figures in zip(self.active, batches, metrics, strict=True):
                if batch is not None:
                    changed |= run.after_update(batch, figures)
            if changed:
                self.group.restack()
        for run in self.active:
            if run.boundary_ahead():
                self.guard(run, lambda r=run: r.agent.check_finite(r.step))

    def periodic(self) -> None:
        """Target updates, then each seed's logs, probes, evaluations and checkpoints due; a seed
        that reached its budget saves and leaves the group."""
        due = [k for k, run in enumerate(self.active) if run.target_due()]
        if due:
            self.group.sync_target(due)
        for run in self.active:
            self.guard(run, run.periodic)
            if run.done:
                self.guard(run, lambda r=run: self.save(r))
        self.leave()
        self.show_progress()

    def guard(self, run: SeedRun, work: Callable[[], object]) -> None:
        """One seed's work; a seed that diverged (NonFiniteError: a NaN or Inf in its TD loss or
        parameters) is stopped alone, said in one line, and never checkpointed again, while the
        other seeds train on (the process then exits 2). It leaves the group after this
        iteration (Trainer.leave), its envs having been stepped."""
        if run in self.diverged:
            return
        try:
            work()
        except NonFiniteError as error:
            self.diverged[run] = f"{error} ({run.run_dir})"
            print(f"error: {self.diverged[run]}", file=sys.stderr)

    def leave(self) -> None:
        """Regroup without the seeds that finished or diverged."""
        staying = [r for r in self.active if not r.done and r not in self.diverged]
        if len(staying) < len(self.active):
            self.active = staying
            self.group = self.regroup()

    def show_progress(self) -> None:
        """The bar's postfix at the first seed's log boundaries: its steps/s and last return."""
        first = self.runs[0]
        if self.bar is not None and crossed(
            first.config.train.log_interval, first.before, first.step
        ):
            score = "-" if first.last_score is None else f"{first.last_score:g}"
            self.bar.set_postfix_str(f"sps={first.last_sps:.0f} return={score}", refresh=False)

    def regroup(self) -> SeedGroup | None:
        """The group of the seeds still training (None once all reached their budgets)."""
        return SeedGroup([r.agent for r in self.active]) if self.active else None

    def save(self, run: SeedRun) -> Path:
        """A seed's checkpoint, naming the seeds trained with it (so --resume resumes them all)."""
        if run.saved_step == run.step:
            return run.saved_path
        return run.save(run.extra)

    def shutdown(self, error: BaseException | None, previous: dict, bar: tqdm) -> None:
        """The final saves, then close everything even when a second signal interrupts a save:
        the event files are flushed, the envs closed and the signal handlers restored."""
        try:
            self.final_save(error)
        except KeyboardInterrupt:  # write_atomic left no partial file behind
            self.abandoned = True
        finally:
            self.closing = True  # request_stop ignores signals from here on
            bar.close()
            try:
                for run in self.runs:
                    run.close(failed=error is not None or run in self.diverged)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        if self.abandoned:
            for run in self.runs:
                newest = f"the newest is {run.saved_path}" if run.saved_path else "none was written"
                print(
                    f"Stopped at once at step {run.step} of {run.run_dir} by a second signal, "
                    f"without a final checkpoint; {newest}.",
                    file=sys.stderr,
                )

    def final_save(self, error: BaseException | None) -> None:
        """Checkpoint every seed's last steps. A crash saves too (at worst it pushes out the
        oldest kept checkpoint), but not after a failed write or a divergence, and never over the
        error."""
        if self.abandoned or isinstance(error, NO_CRASH_SAVE):
            return
        for run in self.runs:
            if run in self.diverged:
                continue
            if error is None:
                self.guard(run, lambda r=run: self.save(r))
                continue
            try:
                self.save(run)
            except Exception as failed:
                print(
                    f"warning: no crash checkpoint was written for {run.run_dir}: {failed}",
                    file=sys.stderr,
                )

    def request_stop(self, signum: int, _frame: object) -> None:
        """Ctrl-C / SIGTERM: finish the current step, checkpoint, exit cleanly. A second signal
        while that is under way interrupts at once (the last checkpoints stay whole); once the
        run is closing (flushing its events, closing envs) further signals are ignored."""
        if self.stop_signal is None:
            self.stop_signal = signum
        elif not self.closing:
            raise KeyboardInterrupt

    def report(self) -> int:
        if self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            for run in self.runs:
                saved = f"checkpoint {run.saved_path}" if run.saved_path else "no checkpoint yet"
                print(
                    f"{name}: stopped {run.run_dir} at step {run.step}; {saved}.", file=sys.stderr
                )
            print(f"Resume with: python train.py --resume {self.runs[0].run_dir}", file=sys.stderr)
            return 128 + self.stop_signal
        if self.diverged:
            return 2
        for run in self.runs:
            print(
                f"Done: {run.step} steps; checkpoint {run.saved_path}; TensorBoard: tensorboard "
                f"--logdir {run.run_dir.parent}",
                file=sys.stderr,
            )
        return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--env", help="game or env id: Pong, pong, ALE/Pong-v5, CartPole-v1 (default Pong)"
    )
    p.add_argument("--variant", help="options joined by '+', e.g. ln+wd+hl_gauss (default dqn)")
    p.add_argument("--seed", type=int, help="seeds torch, numpy, envs and replay (default 1)")
    p.add_argument(
        "--seeds",
        help="train several seeds in one process, batched (e.g. 1-8 or 1,3,5): one ordinary "
        "run directory per seed",
    )
    p.add_argument("--total-steps", type=int, help="environment steps summed over envs")
    p.add_argument("--logdir", default="runs", help="folder that holds one directory per run")
    p.add_argument(
        "--run-name",
        help="the run directory's name under --logdir (default: game__variant__sSEED__time); "
        "rerunning with the same name resumes it; with --seeds it holds {seed}",
    )
    p.add_argument("--preset", help=f"budget/protocol: {', '.join(configs.available('presets'))}")
    p.add_argument("--config", help="a YAML file of config keys laid over the preset")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set agent.lr=1e-4 (repeatable)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    p.add_argument("--list-variants", action="store_true", help="print every option and exit")
    p.add_argument(
        "--list-grid", metavar="GRID", help="print a grid's variants, one a line, and exit"
    )
    add_flags(p)
    return p.parse_args(argv)


def warn_emulated_bf16(config: Config) -> None:
    """One line when bf16 autocast is asked for on a CPU that would emulate it."""
    on_cpu = resolve_device(config.train.device).type == "cpu"
    if config.train.amp and on_cpu and native_bf16() is False:
        print(
            "warning: train.amp=true on a CPU without native bf16 (no avx512_bf16, amx_bf16 or "
            "bf16 flag in /proc/cpuinfo): bf16 is emulated, and the learner runs 2-7x slower "
            "than with train.amp=false (README, Speed).",
            file=sys.stderr,
        )


def warn_unclipped_support(config: Config) -> None:
    """One line when a categorical head learns from unclipped rewards (the minatar preset,
    `no_clip`): returns can then leave its fixed support, and the targets beyond it are clipped
    to the end atoms without a word in the loss. losses/support_clipped logs how many are."""
    a, n = config.agent, config.network
    if is_categorical(a.loss) and not config.env.clip_rewards:
        remedy = "" if a.value_transform != "none" else " or add the hyperbolic option"
        print(
            f"warning: {a.loss} learns raw rewards (env.clip_rewards=false) on a support of "
            f"[{n.v_min:g}, {n.v_max:g}]: TD targets outside it are clipped to its end atoms. "
            "losses/support_clipped logs the fraction of targets clipped; widen "
            f"network.v_min/v_max{remedy} if it is not near 0.",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.list_variants:
            for name, text in configs.describe_variants():
                print(f"{name:10s} {text}")
            return 0
        if args.list_grid:
            print("\n".join(configs.grid_variants(args.list_grid)))
            return 0
        tracking = Tracking.from_args(args)  # a missing [wandb] extra before anything is written
        with ExitStack() as owned:  # the run directories' locks, released on every way out
            launches = resumed_runs(args, owned) if args.resume else new_runs(args, owned)
            for _, run_dir, checkpoint in launches:
                if checkpoint is not None:
                    print(f"resuming {run_dir} at step {checkpoint['step']:,}", file=sys.stderr)
            config = launches[0][0]
            warn_emulated_bf16(config)
            warn_unclipped_support(config)
            try:
                trainer = Trainer(launches, tracking)
            except UserError:
                for _, run_dir, checkpoint in launches:  # leave no directory only this launch wrote
                    if checkpoint is None:
                        shutil.rmtree(run_dir, ignore_errors=True)
                raise
            return trainer.run()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
