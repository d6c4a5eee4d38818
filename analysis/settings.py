"""A run's setting: where its resolved config differs from its variant's own. Runs of one game,
variant and setting are seeds of one experiment; another budget, preset or `--set` is another
experiment, and the report never pools it with the first."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from configs import available, from_dict, resolve, to_dict
from configs.errors import UserError
from configs.load import as_text, flatten

NOT_A_SETTING = (
    "env.id",
    "train.seed",
    "train.device",
    "train.threads",
    "train.pin_memory",
    "train.channels_last",
    "train.compile",
    "train.checkpoint_interval",
    "train.keep_checkpoints",
    "train.log_interval",
)
"""Keys that do not change the experiment: the game (grouped on its own), the seed (the sample),
where and how fast it runs (configs.load.RESUMABLE_KEYS but the budget, page-locked copies, the
memory layout of convolutions and torch.compile, which change float rounding only), and how
often it writes checkpoints and logs. The budget, train.total_steps, is a setting."""
OBSERVERS = ("probes.", "eval.")
"""Sections that only observe: the probes draw from their own generator and restore the global
RNG (probes/schedule.py, probes/fit.py), and evaluation phases play their own envs with their
own generator (agents/evaluation.py), so neither changes what the agent trains on."""


@dataclass(frozen=True)
class Setting:
    """A run's config as its differences from `configs.resolve(variant=variant)` (no preset),
    beyond NOT_A_SETTING and OBSERVERS; values written as `--set` takes them (`as_text`)."""

    variant: str
    differs: tuple[tuple[str, str], ...]
    """(key, value) in config order: the identity of the setting."""
    preset: str | None
    """The preset whose config is nearest (fewest differing keys; none on a tie), for the label."""
    beyond_preset: tuple[tuple[str, str], ...]
    """(key, value) where the config differs from that preset's, in config order."""

    @property
    def label(self) -> str:
        """`dqn`, `dqn [classic]`, `dqn [classic / agent.lr=0.0001]`, `dqn [agent.lr=0.0001]`:
        the preset and the keys beyond it, which name the setting as surely as `differs` does."""
        keys = ", ".join(f"{k}={v}" for k, v in self.beyond_preset)
        inside = " / ".join(part for part in (self.preset, keys) if part)
        return f"{self.variant} [{inside}]" if inside else self.variant


def experiment_keys(raw: dict) -> dict[str, str]:
    """The keys of a config mapping that make the experiment, checked and filled as `from_dict`
    does (so runs saved before a key existed read as what they did), values as text."""
    flat = flatten(to_dict(from_dict(raw)))
    return {
        key: as_text(value)
        for key, value in flat.items()
        if key != "variant" and key not in NOT_A_SETTING and not key.startswith(OBSERVERS)
    }


@cache
def reference(variant: str, preset: str | None) -> dict[str, str] | None:
    """experiment_keys of the variant's own config, under `preset`; None where that preset and
    the variant do not resolve together. Not to be mutated (cached)."""
    try:
        return experiment_keys(to_dict(resolve(preset=preset, variant=variant)))
    except UserError:
        if preset is None:
            raise
        return None


def difference(mine: dict[str, str], theirs: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((key, value) for key, value in mine.items() if theirs.get(key) != value)


def setting_of(raw: dict) -> Setting:
    """The setting of a run's config.yaml; a UserError if it is not a valid config or its
    variant no longer resolves."""
    variant = str(raw.get("variant"))
    mine = experiment_keys(raw)
    try:
        differs = difference(mine, reference(variant, None))
    except UserError as error:
        raise UserError(f"variant {variant!r} does not resolve today: {error}") from None
    candidates = [(None, differs)] + [
        (preset, difference(mine, keys))
        for preset in available("presets")
        if (keys := reference(variant, preset)) is not None
    ]
    preset, beyond = min(candidates, key=lambda c: (len(c[1]), c[0] or ""))
    return Setting(variant, differs, preset, beyond)
