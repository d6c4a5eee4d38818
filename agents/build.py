"""Build an agent for an environment from a resolved config."""

from __future__ import annotations

import torch

from agents.dqn import DQNAgent
from agents.losses import is_categorical
from configs.errors import UserError
from configs.schema import Config
from envs import EnvSpec
from networks import build_network


def resolve_device(name: str) -> torch.device:
    """`auto` takes CUDA when present; asking for `cuda` without it is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "--device cuda was asked for, but torch sees no CUDA device; use cpu or auto."
        )
    return torch.device(name)


def build_agent(config: Config, spec: EnvSpec, device: torch.device) -> DQNAgent:
    network = build_network(
        spec.obs_shape,
        spec.num_actions,
        config.network,
        categorical=is_categorical(config.agent.loss),
    )
    t = config.train
    return DQNAgent(
        network,
        config.agent,
        device=device,
        seed=t.seed,
        pin_memory=t.pin_memory and device.type == "cuda",
        compile=t.compile,
        amp=t.amp,
    )
