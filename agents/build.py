"""Build an agent for an environment from a resolved config."""

from __future__ import annotations

from pathlib import Path

import torch

from agents.dqn import DQNAgent
from agents.losses import is_categorical
from configs.errors import UserError
from configs.schema import Config
from envs import EnvSpec
from interventions import Interventions
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


BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
"""/proc/cpuinfo flags of native bf16 dot products: x86's AVX-512 BF16 and AMX, Arm's BF16."""


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU multiplies bf16 natively, from its flags in `cpuinfo`; None where they
    cannot be read (not Linux). Without it oneDNN emulates bf16 in fp32, and the Nature-CNN update
    under autocast measured 2x (AVX-512) to 7x (AVX2) slower than in fp32 (README, Speed)."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return None
    return bool(flags & BF16_FLAGS)


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
        channels_last=t.channels_last,
    )


def agent_from_checkpoint(
    checkpoint: dict, config: Config, spec: EnvSpec, *, device: torch.device
) -> DQNAgent:
    """An agent (built from the checkpoint's `config`) whose online network holds the
    checkpoint's weights, for acting and probing."""
    agent = build_agent(config, spec, device)
    try:
        build_interventions(agent, config).restore(checkpoint["agent"]["online"])
        agent.online.load_state_dict(checkpoint["agent"]["online"])
    except (KeyError, RuntimeError) as error:
        reason = str(error).splitlines()[0]
        raise UserError(
            f"The checkpoint's network does not fit the network its config builds: {reason}"
        ) from None
    return agent


def build_interventions(agent: DQNAgent, config: Config) -> Interventions:
    """The run's scheduled interventions on the online network and its optimiser; the target
    network mirrors an injected head, so that target syncs and checkpoints keep working."""
    return Interventions(
        config.interventions,
        agent.online,
        agent.optimizer,
        seed=config.train.seed,
        mirrors=[agent.target],
    )
