"""One seed's run inside a training process: its env, replay, agent, interventions, probes,
evaluations, events and checkpoints, and its own step count. The networks' computation (acting
and updates) is the process's, batched over seeds (agents.group.SeedGroup); everything a seed
records is its own, so that its run directory is an ordinary run's."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

import configs
from agents import DQNAgent, build_agent, build_interventions, resolve_device, save_checkpoint
from agents.evaluation import Evaluator
from configs import Config
from envs import AsyncStepper, EnvSpec, EpisodeTracker, clip_rewards, derived_seed, make_env
from probes.schedule import ProbeSchedule, crossed
from replay import Batch, ReplayBuffer, make_replay
from training.logger import TensorBoardLogger
from training.tracking import Tracking, WandbMirror


def run_replay(config: Config, spec: EnvSpec, seed: int) -> ReplayBuffer:
    """The replay buffer a run of `config` on an env of `spec` trains from (its arrays are
    allocated lazily: building one costs no memory until it fills)."""
    return make_replay(
        config.replay,
        config.env.num_envs,
        spec.obs_shape,
        spec.obs_dtype,
        frame_stack=spec.frame_stack,
        n_step=config.agent.n_step,
        gamma=config.agent.gamma,
        seed=seed,
    )


class SeedRun:
    """One seed's moving parts, built from its config (and checkpoint when resuming); with
    `tracking`, its events are mirrored to its own W&B run."""

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        checkpoint: dict | None,
        *,
        tracking: Tracking | None = None,
    ) -> None:
        self.config, self.run_dir = config, run_dir
        c = config
        self.step = int(checkpoint["step"]) if checkpoint else 0
        # One seed per (run seed, step): nearby seeds and resumed runs never share env seeds.
        seed = derived_seed(c.train.seed, self.step)
        np.random.seed(seed)
        torch.manual_seed(seed)  # the network's initialisation
        self.env, spec, self.obs = make_env(c.env.id, c.env.num_envs, seed, c.env, step=self.step)
        self.stepper = AsyncStepper(self.env)
        self.tracker = EpisodeTracker(
            c.env.num_envs, life_loss_terminal=c.env.terminal_on_life_loss
        )
        self.replay = run_replay(c, spec, seed)
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
        mirror = WandbMirror.start(tracking, run_dir, c) if tracking else None
        self.logger = TensorBoardLogger(
            run_dir, purge_step=self.step if checkpoint else None, mirror=mirror
        )
        if not checkpoint:
            self.logger.config(c)
        if refill:
            self.note_refill()
        # Updates owed for steps already taken (fractional with several envs), kept across resumes.
        self.updates_owed = float(checkpoint.get("updates_owed", 0.0)) if checkpoint else 0.0
        self.metrics: dict[str, torch.Tensor] = {}
        self.update_states: torch.Tensor | None = None
        self.events: list[dict[str, float]] = []
        self.last_score: float | None = None
        self.before = self.step
        self.clock = (time.perf_counter(), self.step)
        self.last_sps = 0.0
        self.extra: dict = {}
        """Keys every checkpoint of this run holds besides its own state (the seeds trained with
        it: training.launch.SEED_GROUP)."""
        self.saved_step: int | None = None
        self.saved_path: Path | None = None

    @property
    def done(self) -> bool:
        return self.step >= self.config.train.total_steps

    def note_refill(self) -> None:
        """Say, on the console and in the events (`charts/replay_refilled`, which the report marks),
        that this resume starts from an empty replay buffer: its checkpoint holds the learner but
        not the buffer (replay.save_contents=false). The buffer refills at the current ε, not ε=1,
        and updates wait for learning_starts more steps."""
        epsilon = self.agent.epsilon(self.step)
        print(
            f"Resuming at step {self.step:,} with an empty replay buffer ({self.run_dir}: its "
            f"checkpoint holds no replay contents; replay.save_contents=true saves them): it "
            f"refills acting at epsilon {epsilon:g}, and updates resume at step "
            f"{self.learning_starts:,}.",
            file=sys.stderr,
        )
        self.logger.scalar("charts/replay_refilled", float(self.step), self.step)

    def epsilon(self) -> float:
        return self.agent.epsilon(self.step)

    def next_batch(self) -> Batch | None:
        """A replay batch for the next update this seed owes (one per train_interval env steps),
        or None when it owes none now or is still warming up."""
        a = self.config.agent
        if self.step < self.learning_starts or not self.replay.can_sample(a.batch_size):
            self.updates_owed = 0.0
            return None
        if self.updates_owed < 1.0:
            return None
        self.updates_owed -= 1.0
        return self.replay.sample(a.batch_size)

    def after_update(self, batch: Batch, metrics: dict[str, torch.Tensor]) -> bool:
        """The interventions due after this seed's update, and its priorities; returns whether
        the network's structure changed (an injected head)."""
        self.metrics = metrics
        self.update_states = batch.obs  # the probes' second set (UPDATE_BATCH) reads them
        touched = self.interventions.after_update(self.agent.updates, batch.obs)
        if touched:
            self.events.append(touched)
        self.replay.update_priorities(batch.index, self.agent.priorities)  # no-op if uniform
        return "inject" in touched

    def record(self, actions: np.ndarray, outcome: tuple) -> None:
        """Store one vector step of this seed's envs and count its agent steps."""
        next_obs, raw_rewards, terminated, truncated, info = outcome
        valid, finished = self.tracker.step(
            raw_rewards, terminated, truncated, info.get("lives"), info.get("episode_frame_number")
        )
        rewards = clip_rewards(raw_rewards) if self.config.env.clip_rewards else raw_rewards
        self.replay.add(self.obs, actions, rewards, next_obs, terminated, truncated, valid=valid)
        self.obs = next_obs
        self.before = self.step
        self.step += int(valid.sum())
        self.updates_owed += int(valid.sum()) / self.config.agent.train_interval
        # At the step after this iteration, as every other figure of it: a checkpoint at the step
        # before is followed by no event at its own step, which a resume would log again.
        for touched in self.events:
            self.logger.scalars("interventions/", touched, self.step)
        self.events = []
        games = info.get("game")  # continual MinAtar names each row's game
        for episode in finished:
            self.logger.scalar("charts/episodic_return", episode.score, self.step)
            self.logger.scalar("charts/episodic_length", episode.length, self.step)
            if games is not None:
                game = games[episode.env_index]
                self.logger.scalar(f"charts/episodic_return/{game}", episode.score, self.step)
            self.last_score = episode.score

    def boundary_ahead(self) -> bool:
        """Whether the next iteration may cross a log, probe, evaluation or checkpoint boundary:
        the updates are checked for NaN there (one host sync), before anything reads the
        network."""
        c, now = self.config, self.step
        probes = c.probes.interval if c.probes.enabled else 0
        intervals = (c.train.log_interval, c.train.checkpoint_interval, c.eval.interval, probes)
        return any(crossed(i, now, now + c.env.num_envs) for i in intervals)

    def target_due(self) -> bool:
        return crossed(self.config.agent.target_update_interval, self.before, self.step)

    def periodic(self) -> None:
        """Logs, probes, evaluations and checkpoints due between the previous step and now."""
        c, before, now = self.config, self.before, self.step
        if crossed(c.train.log_interval, before, now):
            self.log_progress()
        self.probe(before, now)
        if crossed(c.eval.interval, before, now):
            self.logger.scalars("eval/", self.evaluator.evaluate(self.agent, now), now)
        if crossed(c.train.checkpoint_interval, before, now):
            self.save(self.extra)

    def probe(self, before: int, now: int) -> None:
        """Once learning starts: the probe batch and its baseline when one is drawn, then the
        probes due (ProbeSchedule.measurements)."""
        if now >= self.config.agent.learning_starts:
            logs = self.probes.measurements(
                self.agent.online, self.replay, before, now, update_batch=self.update_states
            )
            for prefix, step, figures in logs:
                self.logger.scalars(prefix, figures, step)

    def log_progress(self) -> None:
        """charts/sps (this seed's agent steps per second since its previous log), ε, and the
        latest update's metrics."""
        start, start_step = self.clock
        elapsed = time.perf_counter() - start
        sps = (self.step - start_step) / elapsed if elapsed > 0 else 0.0
        self.clock = (time.perf_counter(), self.step)
        self.last_sps = sps
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

    def save(self, extra: dict | None = None) -> Path:
        """Checkpoint the run (with `extra` keys): never a diverged network, and only once every
        event up to this step is on disk, so a resume from it loses no logged step."""
        self.agent.check_finite(self.step)
        self.logger.flush()
        state = {
            "step": self.step,
            "config": configs.to_dict(self.config),
            "agent": self.agent.state_dict(),
            "updates_owed": float(self.updates_owed),
            "best_eval_return": self.evaluator.best_return,
            **(extra or {}),
        }
        if self.config.probes.enabled:
            state["probes"] = self.probes.state_dict()
        if self.config.replay.save_contents:
            state["replay"] = self.replay.state_dict()
        keep = self.config.train.keep_checkpoints
        self.saved_path = save_checkpoint(self.run_dir, self.step, state, keep=keep)
        self.saved_step = self.step
        return self.saved_path

    def close(self, *, failed: bool = False) -> None:
        try:
            self.logger.close(failed=failed)
        finally:
            self.env.close()
