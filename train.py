"""Train a DQN-family agent on an Atari game or a classic-control task.

    python train.py --env Pong --variant ln+wd+hl_gauss --seed 1
    python train.py --resume runs/pong__ln+wd+hl_gauss__s1__20261127-101500 --total-steps 20000000

Data flows one way: config -> envs, replay, network, agent, probes -> loop { act -> env.step ->
replay.add -> every k steps agent.update(replay.sample()) -> log } -> checkpoints.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm import tqdm

import configs
from agents import (
    DQNAgent,
    build_agent,
    build_interventions,
    list_checkpoints,
    native_bf16,
    resolve_device,
    save_checkpoint,
)
from agents.checkpoint import CheckpointWriteError, NonFiniteError, load_latest
from agents.evaluation import Evaluator
from agents.losses import is_categorical
from agents.rundir import hold, holds_anything, set_aside, write_config
from configs import Config, UserError
from envs import (
    AsyncStepper,
    EpisodeTracker,
    clip_rewards,
    derived_seed,
    make_env,
    resolve_env_id,
)
from probes.schedule import ProbeSchedule, crossed
from replay import make_replay

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
NO_CRASH_SAVE = (CheckpointWriteError, NonFiniteError)
"""Errors after which a crash-save would fail again or save a diverged network."""


class TensorBoardLogger:
    """The one object below train.py's main that writes TensorBoard events.

    Args:
        purge_step: a resumed run's checkpoint step. Events logged after it by the runs that went
            on past it are purged when read back; those at that step itself were flushed before
            the checkpoint was written and the resumed run never logs that step again, so they
            are kept (SummaryWriter's own purge_step drops that step too).
    """

    def __init__(self, run_dir: Path, *, purge_step: int | None = None) -> None:
        purge = None if purge_step is None else purge_step + 1
        self.writer = SummaryWriter(str(run_dir), purge_step=purge)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}{key}", value, step)

    def config(self, config: Config) -> None:
        """The resolved options as text and as hparams, so runs can be filtered and compared."""
        text = yaml.safe_dump(configs.to_dict(config), sort_keys=False)
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)
        a, n = config.agent, config.network
        params = {
            "variant": config.variant,
            "env": config.env.id,
            "seed": config.train.seed,
            "loss": a.loss,
            "layer_norm": n.layer_norm,
            "weight_decay": a.weight_decay,
            "l2": a.l2,
            "n_step": a.n_step,
            "double": a.double,
            "clip_rewards": config.env.clip_rewards,
            "value_transform": a.value_transform,
        }
        for summary in hparams(params, {"charts/episodic_return": float("nan")}):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Trainer:
    """Owns the run's moving parts and steps them; see `run` for the loop itself."""

    def __init__(self, config: Config, run_dir: Path, checkpoint: dict | None) -> None:
        self.config, self.run_dir = config, run_dir
        c = config
        if c.train.threads:
            torch.set_num_threads(c.train.threads)
        self.step = int(checkpoint["step"]) if checkpoint else 0
        # One seed per (run seed, step): nearby seeds and resumed runs never share env seeds.
        seed = derived_seed(c.train.seed, self.step)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.env, spec, self.obs = make_env(c.env.id, c.env.num_envs, seed, c.env, step=self.step)
        self.stepper = AsyncStepper(self.env)
        self.tracker = EpisodeTracker(
            c.env.num_envs, life_loss_terminal=c.env.terminal_on_life_loss
        )
        self.replay = make_replay(
            c.replay,
            c.env.num_envs,
            spec.obs_shape,
            spec.obs_dtype,
            frame_stack=spec.frame_stack,
            n_step=c.agent.n_step,
            gamma=c.agent.gamma,
            seed=seed,
        )
        self.agent: DQNAgent = build_agent(c, spec, resolve_device(c.train.device))
        self.interventions = build_interventions(self.agent, c)
        redo = c.interventions.redo
        # Built before a checkpoint is loaded: the initial network the probes baseline against
        # (a resume restores its saved weights below).
        self.probes = ProbeSchedule(
            c.probes,
            seed=c.train.seed,
            initial=self.agent.online,
            redo_tau=redo.tau if redo.enabled else None,
        )
        refill = 0
        if checkpoint:
            self.interventions.restore(checkpoint["agent"]["online"])
            self.agent.load_state_dict(checkpoint["agent"])
            if "probes" in checkpoint:
                self.probes.load_state_dict(checkpoint["probes"])
            if "replay" in checkpoint:
                self.replay.load_state_dict(checkpoint["replay"])
            else:  # an empty buffer warms up again before the updates resume
                refill = self.step
        self.learning_starts = c.agent.learning_starts + refill
        best = checkpoint.get("best_eval_return") if checkpoint else None
        self.evaluator = Evaluator(c, run_dir, best_return=best)
        self.logger = TensorBoardLogger(run_dir, purge_step=self.step if checkpoint else None)
        if not checkpoint:
            self.logger.config(c)
        if refill:
            self.note_refill()
        # Updates owed for steps already taken (fractional with several envs), kept across resumes.
        self.updates_owed = float(checkpoint.get("updates_owed", 0.0)) if checkpoint else 0.0
        self.metrics: dict[str, torch.Tensor] = {}
        self.update_states: torch.Tensor | None = None
        self.last_score: float | None = None
        self.stop_signal: int | None = None
        self.saved_step, self.saved_path = None, None

    def note_refill(self) -> None:
        """Say, on the console and in the events (`charts/replay_refilled`, which the report marks),
        that this resume starts from an empty replay buffer: its checkpoint holds the learner but
        not the buffer (replay.save_contents=false). The buffer refills at the current ε, not ε=1,
        and updates wait for learning_starts more steps."""
        epsilon = self.agent.epsilon(self.step)
        print(
            f"Resuming at step {self.step:,} with an empty replay buffer (the checkpoint holds no "
            f"replay contents; replay.save_contents=true saves them): it refills acting at "
            f"epsilon {epsilon:g}, and updates resume at step {self.learning_starts:,}.",
            file=sys.stderr,
        )
        self.logger.scalar("charts/replay_refilled", float(self.step), self.step)

    def run(self) -> int:
        """Train to total_steps (or a signal), checkpoint, and return the exit status."""
        c = self.config
        self.closing, self.abandoned, error = False, False, None
        previous = {sig: signal.signal(sig, self.request_stop) for sig in STOP_SIGNALS}
        bar = tqdm(
            total=c.train.total_steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=None,
            mininterval=1.0,
        )
        clock = (time.perf_counter(), self.step)
        try:
            while self.step < c.train.total_steps and self.stop_signal is None:
                before = self.step
                self.iteration()
                bar.update(self.step - before)
                clock = self.periodic(before, clock, bar)
        except KeyboardInterrupt:  # a second signal (request_stop): stop now, save nothing more
            self.abandoned = True
        except BaseException as raised:
            error = raised
            raise
        finally:
            path = self.shutdown(error, previous, bar)
        return self.report(path)

    def shutdown(self, error: BaseException | None, previous: dict, bar: tqdm) -> Path | None:
        """The final save, then close everything even when a second signal interrupts that save:
        the event file is flushed, the envs closed and the signal handlers restored."""
        try:
            path = self.final_save(error)
        except KeyboardInterrupt:  # write_atomic left no partial file behind
            self.abandoned, path = True, self.saved_path
        finally:
            self.closing = True  # request_stop ignores signals from here on
            bar.close()
            self.logger.close()
            self.env.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.abandoned:
            newest = f"the newest is {path}" if path else "none was written before"
            print(
                f"Stopped at once at step {self.step} by a second signal, without a final "
                f"checkpoint; {newest}.",
                file=sys.stderr,
            )
        return path

    def final_save(self, error: BaseException | None) -> Path | None:
        """Checkpoint the last steps. A crash saves too (at worst it pushes out the oldest kept
        checkpoint), but not after a failed write or a divergence, and never over the error."""
        if self.abandoned or self.step == self.saved_step or isinstance(error, NO_CRASH_SAVE):
            return self.saved_path
        if error is None:
            return self.save()
        try:
            return self.save()
        except Exception as failed:
            print(f"warning: no crash checkpoint was written: {failed}", file=sys.stderr)
            return self.saved_path

    def iteration(self) -> None:
        """Act in every env, learn while the emulators run, then store what happened."""
        epsilon = self.agent.epsilon(self.step)
        actions = self.agent.act(self.obs, epsilon)
        self.stepper.start(actions)
        events = self.learn()
        next_obs, raw_rewards, terminated, truncated, info = self.stepper.wait()
        valid, finished = self.tracker.step(
            raw_rewards, terminated, truncated, info.get("lives"), info.get("episode_frame_number")
        )
        rewards = clip_rewards(raw_rewards) if self.config.env.clip_rewards else raw_rewards
        self.replay.add(self.obs, actions, rewards, next_obs, terminated, truncated, valid=valid)
        self.obs = next_obs
        self.step += int(valid.sum())
        self.updates_owed += int(valid.sum()) / self.config.agent.train_interval
        # At the step after this iteration, as every other figure of it: a checkpoint at the step
        # before is followed by no event at its own step, which a resume would log again.
        for touched in events:
            self.logger.scalars("interventions/", touched, self.step)
        games = info.get("game")  # continual MinAtar names each row's game
        for episode in finished:
            self.logger.scalar("charts/episodic_return", episode.score, self.step)
            self.logger.scalar("charts/episodic_length", episode.length, self.step)
            if games is not None:
                game = games[episode.env_index]
                self.logger.scalar(f"charts/episodic_return/{game}", episode.score, self.step)
            self.last_score = episode.score

    def learn(self) -> list[dict[str, float]]:
        """The updates owed for the steps taken so far (one per train_interval env steps); returns
        what the interventions touched, one dict per update that touched something."""
        a = self.config.agent
        if self.step < self.learning_starts or not self.replay.can_sample(a.batch_size):
            self.updates_owed = 0.0
            return []
        events = []
        while self.updates_owed >= 1.0:
            batch = self.replay.sample(a.batch_size)
            self.metrics = self.agent.update(batch)
            self.update_states = batch.obs  # the probes' second set (UPDATE_BATCH) reads them
            touched = self.interventions.after_update(self.agent.updates, batch.obs)
            if touched:
                events.append(touched)
            self.replay.update_priorities(batch.index, self.agent.priorities)  # no-op if uniform
            self.updates_owed -= 1.0
        if self.boundary_ahead():
            self.agent.check_finite(self.step)
        return events

    def boundary_ahead(self) -> bool:
        """Whether this iteration may cross a log, probe, evaluation or checkpoint boundary: the
        updates are checked for NaN there (one host sync), before anything reads the network."""
        c, now = self.config, self.step
        probes = c.probes.interval if c.probes.enabled else 0
        intervals = (c.train.log_interval, c.train.checkpoint_interval, c.eval.interval, probes)
        return any(crossed(i, now, now + c.env.num_envs) for i in intervals)

    def periodic(self, before: int, clock: tuple[float, int], bar: tqdm) -> tuple[float, int]:
        """Target updates, logs, probes and checkpoints due between steps `before` and now."""
        c, now = self.config, self.step
        if crossed(c.agent.target_update_interval, before, now):
            self.agent.sync_target()
        if crossed(c.train.log_interval, before, now):
            clock = self.log_progress(clock, bar)
        self.probe(before, now)
        if crossed(c.eval.interval, before, now):
            self.logger.scalars("eval/", self.evaluator.evaluate(self.agent, now), now)
        if crossed(c.train.checkpoint_interval, before, now):
            self.save()
        return clock

    def probe(self, before: int, now: int) -> None:
        """Once learning starts: the probe batch and its baseline when one is drawn, then the
        probes due (ProbeSchedule.measurements)."""
        if now >= self.config.agent.learning_starts:
            logs = self.probes.measurements(
                self.agent.online, self.replay, before, now, update_batch=self.update_states
            )
            for prefix, step, figures in logs:
                self.logger.scalars(prefix, figures, step)

    def log_progress(self, clock: tuple[float, int], bar: tqdm) -> tuple[float, int]:
        start, start_step = clock
        elapsed = time.perf_counter() - start
        sps = (self.step - start_step) / elapsed if elapsed > 0 else 0.0
        self.logger.scalar("charts/sps", sps, self.step)
        self.logger.scalar("charts/epsilon", self.agent.epsilon(self.step), self.step)
        if self.metrics:
            values = {k: float(v) for k, v in self.metrics.items()}
            self.logger.scalar("losses/td_loss", values.pop("td_loss"), self.step)
            self.logger.scalar("losses/q_values", values.pop("q_values"), self.step)
            # e.g. regen's distance, a categorical head's losses/support_clipped
            tagged = [k for k in values if k.startswith(("interventions/", "losses/"))]
            self.logger.scalars("", {k: values.pop(k) for k in tagged}, self.step)
            self.logger.scalars("plasticity/", values, self.step)
        score = "-" if self.last_score is None else f"{self.last_score:g}"
        bar.set_postfix_str(f"sps={sps:.0f} return={score}", refresh=False)
        return time.perf_counter(), self.step

    def request_stop(self, signum: int, _frame: object) -> None:
        """Ctrl-C / SIGTERM: finish the current step, checkpoint, exit cleanly. A second signal
        while that is under way interrupts at once (the last checkpoint stays whole); once the run
        is closing (flushing its events, closing envs) further signals are ignored."""
        if self.stop_signal is None:
            self.stop_signal = signum
        elif not self.closing:
            raise KeyboardInterrupt

    def save(self) -> Path:
        """Checkpoint the run: never a diverged network, and only once every event up to this
        step is on disk, so a resume from it loses no logged step."""
        self.agent.check_finite(self.step)
        self.logger.flush()
        state = {
            "step": self.step,
            "config": configs.to_dict(self.config),
            "agent": self.agent.state_dict(),
            "updates_owed": float(self.updates_owed),
            "best_eval_return": self.evaluator.best_return,
        }
        if self.config.probes.enabled:
            state["probes"] = self.probes.state_dict()
        if self.config.replay.save_contents:
            state["replay"] = self.replay.state_dict()
        keep = self.config.train.keep_checkpoints
        self.saved_path = save_checkpoint(self.run_dir, self.step, state, keep=keep)
        self.saved_step = self.step
        return self.saved_path

    def report(self, path: Path | None) -> int:
        if self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            saved = f"checkpoint {path}" if path else "no checkpoint written yet"
            print(
                f"{name}: stopped at step {self.step}; {saved}. "
                f"Resume with: python train.py --resume {self.run_dir}",
                file=sys.stderr,
            )
            return 128 + self.stop_signal
        print(
            f"Done: {self.step} steps; checkpoint {path}; TensorBoard: tensorboard --logdir "
            f"{self.run_dir.parent}",
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
    p.add_argument("--total-steps", type=int, help="environment steps summed over envs")
    p.add_argument("--logdir", default="runs", help="folder that holds one directory per run")
    p.add_argument(
        "--run-name",
        help="the run directory's name under --logdir (default: game__variant__sSEED__time); "
        "rerunning with the same name resumes it",
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
    return p.parse_args(argv)


def cli_overrides(args: argparse.Namespace) -> dict:
    flags = {
        "env.id": args.env,
        "train.seed": args.seed,
        "train.total_steps": args.total_steps,
        "train.device": args.device,
    }
    return configs.load.unflatten({k: v for k, v in flags.items() if v is not None})


def new_run(args: argparse.Namespace, owned: ExitStack) -> tuple[Config, Path, dict | None]:
    """The config the flags give, its run directory and the checkpoint to resume (None for a
    new run); the directory's lock (agents.rundir.hold) is held until `owned` closes. A
    `--run-name` directory that holds checkpoints is resumed (a requeued job reruns the same
    command) if the flags agree; one that holds none has what it holds set aside, kept, and the
    run starts again under its name."""
    config = configs.resolve(
        preset=args.preset,
        config_file=args.config,
        variant=args.variant,
        overrides=cli_overrides(args),
        assignments=args.set,
        on_override=lambda line: print(line, file=sys.stderr),
    )
    resolve_device(config.train.device)  # refuse a missing CUDA before anything is written
    name, _ = resolve_env_id(config.env.id)
    default = f"{name}__{config.variant}__s{config.train.seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    if args.run_name:
        run_dir = Path(args.logdir) / args.run_name
        owned.callback(os.close, hold(run_dir, create=True))
        if list_checkpoints(run_dir):
            _, checkpoint = load_latest(run_dir, on_skip=warn_skipped)
            saved = configs.from_dict(checkpoint["config"])
            check_same_run(config, saved, run_dir)
            check_budget(config, saved, int(checkpoint["step"]), run_dir)
            write_config(run_dir, configs.to_dict(config))  # this launch's budget
            return config, run_dir, checkpoint
        if holds_anything(run_dir):
            aside = set_aside(run_dir)
            print(
                f"{run_dir} held no checkpoint: the run starts again from step 0, and what the "
                f"earlier attempt wrote is kept in {aside}.",
                file=sys.stderr,
            )
    else:
        run_dir = make_run_dir(Path(args.logdir) / default)
        owned.callback(os.close, hold(run_dir))
    write_config(run_dir, configs.to_dict(config))
    return config, run_dir, None


def check_budget(config: Config, saved: Config, step: int, run_dir: Path) -> None:
    """Refuse a new budget below the step the run has reached: config.yaml would then call a run
    finished at a budget it went past, and the report would group it with runs of that budget."""
    total = config.train.total_steps
    if total < step and total != saved.train.total_steps:
        raise UserError(
            f"--total-steps {total:,} is below the step {run_dir} has reached ({step:,}); give "
            f"at least {step:,}, or keep its budget of {saved.train.total_steps:,}."
        )


def make_run_dir(run_dir: Path) -> Path:
    """Create the run directory, with a numeric suffix if that name is taken."""
    candidate, index = run_dir, 1
    try:
        while True:
            try:
                candidate.mkdir(parents=True)
                return candidate
            except FileExistsError:
                index += 1
                candidate = run_dir.with_name(f"{run_dir.name}-{index}")
    except OSError as error:
        raise UserError(f"Cannot create the run directory {candidate}: {error.strerror}.") from None


def check_same_run(config: Config, saved: Config, run_dir: Path) -> None:
    """Refuse to resume `run_dir` under flags that change its config (beyond budget, device and
    threads)."""
    changed = configs.load.changed_keys(config, saved)
    if changed:
        raise UserError(
            f"{run_dir} holds a run whose config differs from these flags in "
            f"{', '.join(changed)}; use another --run-name, or the same flags to resume it."
        )


def resumed_run(args: argparse.Namespace, owned: ExitStack) -> tuple[Config, Path, dict]:
    """The run's saved config (with a new --total-steps or --device if given) and its checkpoint;
    the directory's lock is held until `owned` closes."""
    fixed = [
        f"--{k.replace('_', '-')}"
        for k in ("env", "variant", "seed", "preset", "config", "run_name")
        if getattr(args, k) is not None
    ] + (["--set"] if args.set else [])
    if fixed:
        raise UserError(
            f"--resume keeps the run's own config; drop {', '.join(fixed)} "
            "(only --total-steps and --device may change)."
        )
    run_dir = Path(args.resume)
    if run_dir.is_file():
        raise UserError(
            f"--resume takes the run directory, not a checkpoint file: {run_dir.parent}"
        )
    if not run_dir.is_dir():
        raise UserError(f"Checkpoint or run directory {run_dir} does not exist.")
    owned.callback(os.close, hold(run_dir))
    _, checkpoint = load_latest(run_dir, on_skip=warn_skipped)
    saved = configs.from_dict(checkpoint["config"])
    changes = {"total_steps": args.total_steps, "device": args.device}
    train = replace(saved.train, **{k: v for k, v in changes.items() if v is not None})
    config = replace(saved, train=train)
    configs.load.check_values(config)
    check_budget(config, saved, int(checkpoint["step"]), run_dir)
    resolve_device(config.train.device)
    write_config(run_dir, configs.to_dict(config))
    return config, run_dir, checkpoint


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


def warn_skipped(path: Path, reason: str) -> None:
    """One line per unreadable checkpoint that a resume passes over for an older one."""
    print(f"warning: {reason} Falling back to the previous checkpoint.", file=sys.stderr)


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
        with ExitStack() as owned:  # the run directory's lock, released on every way out
            launch = resumed_run if args.resume else new_run
            config, run_dir, checkpoint = launch(args, owned)
            if checkpoint is not None:
                print(f"resuming {run_dir} at step {checkpoint['step']:,}", file=sys.stderr)
            warn_emulated_bf16(config)
            warn_unclipped_support(config)
            try:
                trainer = Trainer(config, run_dir, checkpoint)
            except UserError:
                if checkpoint is None:  # leave no run directory that only this launch wrote
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
            return trainer.run()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
