"""Configuration: typed dataclasses (schema), YAML values (defaults, presets, variants, grids)."""

from configs.errors import UserError
from configs.load import (
    available,
    describe_variants,
    from_dict,
    grid_variants,
    resolve,
    to_dict,
)
from configs.schema import (
    AgentConfig,
    Config,
    EnvConfig,
    EvalConfig,
    NetworkConfig,
    ProbeConfig,
    ReplayConfig,
    TrainConfig,
)

__all__ = [
    "AgentConfig",
    "Config",
    "EnvConfig",
    "EvalConfig",
    "NetworkConfig",
    "ProbeConfig",
    "ReplayConfig",
    "TrainConfig",
    "UserError",
    "available",
    "describe_variants",
    "from_dict",
    "grid_variants",
    "resolve",
    "to_dict",
]
