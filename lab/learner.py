"""The lab's learner: a DQN agent trained on given targets instead of bootstrapped ones.

A lab problem is DQN's regression without bootstrapping: each update draws a batch of (input,
output) pairs, and the agent's own update (`SeedGroup.optimise`: its network, loss, optimiser, L2,
regen and gradient clipping) fits the output's value to the given target, passed as the reward
with discount 0, so that the TD target r + γⁿ·Q̄ is the target itself for every value loss (for
C51 the projection of a point mass, i.e. its two-hot encoding). The run's interventions act after
every update as they do in `train.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agents import DQNAgent
from agents.build import build_interventions
from agents.group import SeedGroup
from agents.losses import is_categorical
from configs.schema import Config
from networks import build_network
from probes import measure


class Learner:
    """One network fit to a sequence of targets over a fixed set of inputs.

    Args:
        inputs: [N, ...] the inputs every task is defined on (the network's observations).
        num_outputs: values per input (the agent's actions).
        seed: draws the initial parameters and the batches.
    """

    def __init__(self, config: Config, inputs: Tensor, num_outputs: int, *, seed: int) -> None:
        torch.manual_seed(seed)
        network = build_network(
            inputs.shape[1:],
            num_outputs,
            config.network,
            categorical=is_categorical(config.agent.loss),
        )
        self.agent = DQNAgent(network, config.agent, device=torch.device("cpu"), seed=seed)
        self.group = SeedGroup([self.agent])  # the update's code: train.py's, for one seed
        self.interventions = build_interventions(self.agent, config)
        self.inputs = inputs
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_size = config.agent.batch_size
        self.zeros = torch.zeros(self.batch_size * num_outputs)  # discount 0: the target is r
        self.last_obs: Tensor | None = None

    @property
    def updates(self) -> int:
        return self.agent.updates

    def step(self, targets: Tensor) -> dict[str, float]:
        """The interventions due after the previous update, then one update on every output of
        `batch_size` inputs drawn uniformly; `targets` is [N, A]. Interventions act between
        updates, as in train.py: acting before the next update rather than straight after the
        last keeps a reset on a task boundary out of what is measured at the end of the task.
        Returns what the interventions touched (empty when none was due)."""
        touched = {}
        if self.last_obs is not None:
            touched = self.interventions.after_update(self.agent.updates, self.last_obs)
            if "inject" in touched:
                self.group.restack()
        rows = torch.randint(len(self.inputs), (self.batch_size,), generator=self.generator)
        obs = self.inputs[rows]
        output = self.group.online(obs[None])[0].flatten(0, 1)  # [B·A] values, [B·A, K] logits
        per_sample, _ = self.agent.loss(
            output, output.detach(), targets[rows].flatten(), self.zeros
        )
        self.group.optimise(per_sample.mean()[None])
        self.last_obs = obs
        return touched

    @torch.no_grad()
    def values(self) -> Tensor:
        """The network's values (Q in reward units) of every input, [N, A]."""
        return self.agent.q_values(self.inputs)

    def probes(self, batch: int, ntk_batch: int) -> dict[str, float]:
        """The agents' plasticity probes on the first `batch` inputs."""
        network = self.agent.online
        return measure(
            network, self.inputs[:batch], ntk_batch=ntk_batch, ntk_readout=network.q_values
        )
