"""Evaluation phases during training, as Dopamine's evaluation phases and SB3's EvalCallback run
them: every `eval.interval` steps the online network plays `eval.episodes` whole games at
`agent.eval_epsilon` on a fresh env, the mean raw score is logged, and the best network so far is
kept as `best.pt`: a run whose final greedy policy has collapsed still has the one that worked."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from agents.checkpoint import write_atomic
from agents.dqn import DQNAgent
from configs import Config, to_dict
from envs import derived_seed, make_env, play_episodes
from probes.observe import eval_mode

BEST = "best.pt"


def best_path(run_dir: Path) -> Path:
    return run_dir / BEST


def evaluation_seed(seed: int, step: int) -> int:
    """Env and ε seed of the evaluation at `step`: a function of (run seed, step) alone, so a
    resumed run evaluates exactly as an uninterrupted one, on games training never saw."""
    return derived_seed(seed, step, 1)


def play(agent: DQNAgent, config: Config, *, seed: int, step: int) -> list[float]:
    """Raw scores of `eval.episodes` games played at eval_epsilon on a fresh env (continual
    MinAtar: the game trained at `step`), in eval mode: noisy layers act on their mean weights,
    as Dopamine evaluates."""
    e = config.eval
    env, _, obs = make_env(
        config.env.id, min(e.num_envs, e.episodes), seed, config.env, step=step, switching=False
    )
    rng = np.random.default_rng(seed)
    epsilon = config.agent.eval_epsilon
    try:
        with eval_mode(agent.online):
            games = play_episodes(
                env,
                obs,
                lambda o: agent.act(o, epsilon, rng=rng),
                e.episodes,
                life_loss_terminal=config.env.terminal_on_life_loss,
            )
    finally:
        env.close()
    return [game.score for game in games]


class Evaluator:
    """Runs the evaluation phases due and keeps the best network.

    Args:
        config: the run's resolved config (its `eval` section says when and how much).
        run_dir: where `best.pt` is written.
        best_return: the best mean evaluated so far (from the checkpoint when resuming).
    """

    def __init__(self, config: Config, run_dir: Path, *, best_return: float | None) -> None:
        self.config, self.run_dir = config, run_dir
        self.best_return = best_return

    def evaluate(self, agent: DQNAgent, step: int) -> dict[str, float]:
        """Play one evaluation phase; write best.pt when its mean beats every earlier one.

        Returns:
            `episodic_return` (mean raw score) and `best_return`, for the eval/ tags.
        """
        seed = evaluation_seed(self.config.train.seed, step)
        scores = play(agent, self.config, seed=seed, step=step)
        mean = statistics.fmean(scores)
        if self.best_return is None or mean > self.best_return:
            self.best_return = mean
            self.keep_best(agent, step, mean)
        return {"episodic_return": mean, "best_return": self.best_return}

    def keep_best(self, agent: DQNAgent, step: int, mean: float) -> None:
        """best.pt: a checkpoint holding the online network only (what evaluate.py --best plays)."""
        state = {
            "step": step,
            "config": to_dict(self.config),
            "agent": {"online": agent.online.state_dict()},
            "eval_return": mean,
        }
        write_atomic(best_path(self.run_dir), state)
