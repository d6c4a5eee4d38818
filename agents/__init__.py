"""Agents: the DQN learning rule, value losses and targets, checkpoints."""

from agents.build import (
    agent_from_checkpoint,
    build_agent,
    build_interventions,
    native_bf16,
    resolve_device,
)
from agents.checkpoint import find_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from agents.dqn import DQNAgent, linear_epsilon, make_optimizer
from agents.losses import is_categorical, make_loss

__all__ = [
    "DQNAgent",
    "agent_from_checkpoint",
    "build_agent",
    "build_interventions",
    "find_checkpoint",
    "is_categorical",
    "linear_epsilon",
    "list_checkpoints",
    "load_checkpoint",
    "make_loss",
    "make_optimizer",
    "native_bf16",
    "resolve_device",
    "save_checkpoint",
]
