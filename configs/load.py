"""Resolve a Config: defaults.yaml, then a preset, a config file, the variant's options, and
command-line overrides, in that order. Unknown keys, clashing options and impossible values are
refused with a UserError that names them."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import shlex
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from configs import scalars
from configs.errors import UserError
from configs.schema import Config

CONFIG_DIR = Path(__file__).resolve().parent
YAML_ERRORS = (Exception,)
"""What reading YAML raises on bad input: besides yaml's own errors, its constructors raise whatever
their parsing code does on a bad tag (ValueError for `!!int x`, IndexError for `!!int` alone,
AttributeError for `!!timestamp 2001-13-45null`), and undecodable bytes and nesting past the
recursion limit raise too."""
NSTEP = re.compile(r"nstep(\d+)$")


def load_yaml(path: Path, what: str) -> dict:
    """Read a YAML mapping (numbers in decimal, booleans as true or false: `scalars`), or raise a
    UserError naming the file."""
    try:
        data = scalars.read(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist.") from None
    except (OSError, *YAML_ERRORS) as error:
        raise UserError(f"{what} {path} could not be read: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"{what} {path} must hold a mapping of config keys, not {type(data).__name__}."
        )
    return data


def available(folder: str) -> list[str]:
    """Names of the YAML files in a config sub-folder (presets, variants, grids)."""
    return sorted(p.stem for p in (CONFIG_DIR / folder).glob("*.yaml"))


def describe_variants() -> list[tuple[str, str]]:
    """(option, one-line description) for every option, from the first comment of its file; a
    combined option (one that lists `options`) also says what it expands to."""
    rows = []
    for name in available("variants"):
        first = (CONFIG_DIR / "variants" / f"{name}.yaml").read_text().splitlines()[0]
        text = first.lstrip("# ").split(" — ", 1)[-1]
        parts = expand_option(name)
        rows.append((name, text if parts == [name] else f"{text} Expands to {'+'.join(parts)}."))
    rows.append(("nstepN", "N-step returns from the replay buffer, e.g. nstep3 (Sutton 1988)."))
    return sorted(rows)


def grid_variants(name: str) -> list[str]:
    """The variants a grid file in configs/grids/ lists."""
    if name not in available("grids"):
        raise UserError(f"Unknown grid '{name}'. Known grids: {', '.join(available('grids'))}.")
    return list(load_yaml(CONFIG_DIR / "grids" / f"{name}.yaml", "Grid file")["variants"])


SOFT = "defaults"
"""The section of an option file whose keys replace the defaults but yield to a preset or a config
file that sets them: a baseline's optimiser and init (c51's Adam 2.5e-4) are Dopamine's Atari
values, and a domain's preset (classic, minatar, atari100k) keeps its own."""


def option_keys(option: str, section: str | None = None) -> dict:
    """The keys one option sets: its ordinary keys (a combined option's own, without its
    `options` list), or with `section=SOFT` those of its `defaults` section."""
    match = NSTEP.match(option)
    if match:
        return {} if section else {"agent": {"n_step": int(match.group(1))}}
    if option not in available("variants"):
        known = ", ".join(available("variants") + ["nstepN"])
        hint = difflib.get_close_matches(option, available("variants"), n=1)
        hint_text = f" Did you mean '{hint[0]}'?" if hint else ""
        raise UserError(
            f"Unknown option '{option}' in --variant.{hint_text} Known options: {known}."
        )
    keys = load_yaml(CONFIG_DIR / "variants" / f"{option}.yaml", "Option file")
    if section:
        return dict(keys.get(section) or {})
    return {k: v for k, v in keys.items() if k not in ("options", SOFT)}


def expand_option(option: str) -> list[str]:
    """The options a combined option stands for (its file's `options` list, e.g. `rainbow`);
    [option] for a plain one."""
    if NSTEP.match(option) or option not in available("variants"):
        return [option]
    keys = load_yaml(CONFIG_DIR / "variants" / f"{option}.yaml", "Option file")
    return list(keys.get("options", [option]))


PART, OWN, NAMED = 0, 1, 2
"""Who sets a key, by precedence: a part of a combined option, the combined option's own keys
(they adjust its parts, e.g. rainbow's Adam settings over c51's), an option named outright."""


def option_layers(given: str) -> list[tuple[str, str, int]]:
    """(option, label, precedence) for each option that `given` applies, in order."""
    parts = expand_option(given)
    if parts == [given]:
        return [(given, f"'{given}'", NAMED)]
    layers = [(part, f"'{part}' (from '{given}')", PART) for part in parts]
    return [*layers, (given, f"'{given}'", OWN)]


def variant_keys(variant: str, section: str | None = None) -> dict:
    """Merge the options of `a+b+c` (a combined option as its parts, then its own keys). A key set
    at a higher precedence (PART < OWN < NAMED) replaces one set at a lower: `rainbow+hl_gauss`
    is Rainbow with HL-Gauss in place of C51's loss. Two options of the same precedence that set
    one key to different values clash, and the error names both (and where they came from).
    `section=SOFT` merges the options' `defaults` sections by the same rules."""
    return unflatten(variant_owners(variant, section)[0])


def variant_owners(variant: str, section: str | None = None) -> tuple[dict, dict[str, str]]:
    """`variant_keys`, flat, and for each key the option that set it ("'c51' (from 'rainbow')")."""
    merged: dict = {}
    owners: dict[str, tuple[str, int]] = {}  # key -> (who set it, precedence)
    for given in [o.strip() for o in variant.split("+")]:
        if not given:
            raise UserError(f"--variant '{variant}' has an empty option; join options with '+'.")
        for option, name, rank in option_layers(given):
            for key, value in flatten(option_keys(option, section)).items():
                if key in merged:
                    owner, owner_rank = owners[key]
                    if rank < owner_rank:
                        continue  # the higher precedence keeps the key, whatever the value
                    if rank == owner_rank and merged[key] != value:
                        raise UserError(
                            f"Options {owner} and {name} clash in --variant '{variant}': they set "
                            f"{key} to {merged[key]!r} and {value!r}. Drop one of them."
                        )
                merged[key], owners[key] = value, (name, rank)
    return merged, {key: name for key, (name, _) in owners.items()}


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: dict[str, Any]) -> dict:
    """{'a.b': 1} -> {'a': {'b': 1}}."""
    tree: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def merge(base: dict, update: dict, source: str) -> dict:
    """Return base with update's keys laid over it; a key base lacks is a UserError. The variant
    label comes only from --variant, so that it always names the options applied."""
    flat = flatten(base)
    for key, value in flatten(update).items():
        if key == "variant":
            raise UserError(f"'variant' cannot be set in {source}; choose options with --variant.")
        if key not in flat:
            raise UserError(unknown_key_message(key, flat, source))
        flat[key] = value
    return unflatten(flat)


def unknown_key_message(key: str, known: dict, source: str) -> str:
    section = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k for k in known if k.rsplit(".", 1)[0] == section] if section else list(known)
    hint = difflib.get_close_matches(key, list(known), n=1)
    hint_text = f" Did you mean '{hint[0]}'?" if hint else ""
    valid = ", ".join(sorted(siblings)) or ", ".join(sorted({k.split(".")[0] for k in known}))
    return f"Unknown config key '{key}' in {source}.{hint_text} Valid keys: {valid}."


def parse_set(assignment: str) -> dict:
    """`agent.lr=1e-4` -> {'agent': {'lr': 0.0001}}. The value is read as YAML, as a config file
    is (`scalars`), except that a key taking a string takes the text as written when YAML would
    read something else: `env.id=on` is 'on', `env.id=1.0` is '1.0'."""
    key, sep, text = assignment.partition("=")
    key, text = key.strip(), text.strip()
    if not sep or not key:
        raise UserError(
            f"--set '{assignment}' must look like section.key=value, e.g. agent.lr=1e-4."
        )
    try:
        value = scalars.read(text)
    except YAML_ERRORS:  # not YAML: the text itself, refused by the key's type if need be
        value = text
    if text and not isinstance(value, str) and takes_text(key_kind(key)):
        value = text
    return unflatten({key: value})


def key_kind(key: str) -> Any:
    """The annotation of a dotted config key; None for a key the schema lacks."""
    kind: Any = Config
    for part in key.split("."):
        if not dataclasses.is_dataclass(kind):
            return None
        kind = typing.get_type_hints(kind).get(part)
    return kind


def takes_text(kind: Any) -> bool:
    """Whether a key of this annotation takes a string (`str` or a Literal of strings)."""
    if typing.get_origin(kind) is Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(kind))
    return kind is str


def resolve(
    *,
    preset: str | None = None,
    config_file: str | None = None,
    variant: str | None = None,
    overrides: dict | None = None,
    assignments: list[str] = (),
    on_override: Callable[[str], None] | None = None,
) -> Config:
    """Build the Config: defaults < the variant's `defaults` sections < preset < config file <
    variant < overrides < --set. `on_override` is called with one `warning:` line for each key
    the config file sets that an option of the variant replaces with another value (unless an
    override or --set sets it anyway); a preset's keys are the project's to replace: no line."""
    raw = load_yaml(CONFIG_DIR / "defaults.yaml", "Defaults file")
    if variant is not None:
        raw = merge(raw, variant_keys(variant, SOFT), f"--variant {variant}")
    if preset is not None:
        if preset not in available("presets"):
            known = ", ".join(available("presets"))
            raise UserError(f"Unknown preset '{preset}'. Known presets: {known}.")
        raw = merge(raw, load_yaml(CONFIG_DIR / "presets" / f"{preset}.yaml", "Preset"), preset)
    mine = {}
    if config_file is not None:
        mine = load_yaml(Path(config_file), "Config file")
        raw = merge(raw, mine, config_file)
    if variant is not None:
        if on_override is not None:
            later = {*flatten(overrides or {}), *(a.partition("=")[0].strip() for a in assignments)}
            for line in replaced(mine, variant, config_file, later):
                on_override(line)
        raw = merge(raw, variant_keys(variant), f"--variant {variant}")
        raw["variant"] = "+".join(o.strip() for o in variant.split("+"))
    raw = merge(raw, overrides or {}, "the command line")
    for assignment in assignments:
        raw = merge(raw, parse_set(assignment), f"--set {assignment}")
    return from_dict(raw)


def replaced(mine: dict, variant: str, source: str | None, later: set[str]) -> list[str]:
    """A `warning:` line for each key of the config file `source` (`mine`) that an option of
    `variant` sets to another value, unless a key in `later` (an override, a --set) sets it."""
    keys, owners = variant_owners(variant)
    lines = []
    for key, value in flatten(mine).items():
        if key in keys and keys[key] != value and key not in later:
            lines.append(
                f"warning: option {owners[key]} replaces {key}={as_text(value)} from {source} "
                f"with {as_text(keys[key])} (--variant is applied after --config); add --set "
                f"{shlex.quote(f'{key}={as_text(value)}')} to keep it."
            )
    return lines


def as_text(value: Any) -> str:
    """A value as --set takes it: 0.001, true, [64, 64], mse."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return f"[{', '.join(map(as_text, value))}]"
    return str(value)


BEFORE_THE_KEY = {"network.init": "torch"}
"""Keys whose runs saved before the key existed did something else than today's default: such
a run takes this value (networks were drawn by PyTorch's default init before `network.init`)."""


def from_dict(raw: dict) -> Config:
    """Typed Config from a nested mapping (e.g. a saved config.yaml), with every value checked.
    Keys the suite gained after the mapping was saved take their defaults (or what those runs did,
    `BEFORE_THE_KEY`), so that runs saved by an earlier version still resume and evaluate."""
    if isinstance(raw, dict):
        defaults = flatten(load_yaml(CONFIG_DIR / "defaults.yaml", "Defaults file"))
        raw = unflatten({**defaults, **BEFORE_THE_KEY, **flatten(raw)})
    config = build(Config, raw, "")
    check_values(config)
    return config


def build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise UserError(f"Config section '{prefix.rstrip('.')}' must be a mapping, not {raw!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise UserError(
                unknown_key_message(
                    f"{prefix}{key}", {f"{prefix}{n}": 0 for n in names}, "the config"
                )
            )
    values = {}
    for name in names:
        if name not in raw:
            raise UserError(f"Config key '{prefix}{name}' is missing.")
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = build(kind, raw[name], f"{prefix}{name}.")
        else:
            values[name] = coerce(raw[name], kind, f"{prefix}{name}")
    return cls(**values)


def coerce(value: Any, kind: Any, key: str) -> Any:
    """Check (and gently convert: '1e-4' -> 1e-4, 1e6 -> 1000000) one value against its type."""
    origin = typing.get_origin(kind)
    try:
        if origin is Literal:
            if value not in typing.get_args(kind):
                raise ValueError(f"one of {', '.join(map(str, typing.get_args(kind)))}")
            return value
        if origin is tuple:
            return tuple(coerce(v, typing.get_args(kind)[0], key) for v in as_list(value))
        if origin in (typing.Union, types.UnionType):
            raise TypeError(f"unsupported annotation {kind}")
        return coerce_scalar(value, kind)
    except ValueError as error:
        raise UserError(f"Config key '{key}' got {value!r}; it takes {error}.") from None


def as_list(value: Any) -> list:
    if not isinstance(value, list | tuple):
        raise ValueError("a list, e.g. [120, 84]")
    return list(value)


def coerce_scalar(value: Any, kind: type) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            advice = scalars.misread(value, numeric=False) if isinstance(value, str) else ""
            raise ValueError(f"true or false{advice}")
        return value
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = finite_number(value, "a whole number")  # 1e6 is a float
        if number != int(number):
            raise ValueError("a whole number")
        return int(number)
    if kind is float:
        return float(finite_number(value, "a number"))
    if kind is str:
        if not isinstance(value, str):
            raise ValueError("a string (quoted, in a YAML file, if YAML reads it as another type)")
        return value
    raise TypeError(f"unsupported annotation {kind}")


def finite_number(value: Any, expected: str) -> int | float:
    """A finite number, or the decimal number a string says; ValueError(expected) otherwise."""
    if isinstance(value, str):
        value = scalars.number(value, expected)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(expected)
    if not math.isfinite(value):
        raise ValueError(f"{expected} (finite)")
    return value


def at_least(low: float) -> Callable[[Any], bool]:
    return lambda v: v >= low


def within(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: low <= v <= high


RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "agent.lr": (lambda v: v > 0, "a learning rate > 0"),
    "agent.gamma": (lambda v: 0 < v <= 1, "a discount in (0, 1]"),
    "agent.n_step": (within(1, 255), "n from 1 to 255"),
    "agent.batch_size": (at_least(1), "a batch size >= 1"),
    "agent.train_interval": (at_least(1), ">= 1"),
    "agent.target_update_interval": (at_least(1), ">= 1"),
    "agent.learning_starts": (at_least(0), ">= 0"),
    "agent.epsilon_start": (within(0, 1), "a value in [0, 1]"),
    "agent.epsilon_end": (within(0, 1), "a value in [0, 1]"),
    "agent.epsilon_decay_steps": (at_least(1), ">= 1"),
    "agent.eval_epsilon": (within(0, 1), "a value in [0, 1]"),
    "agent.weight_decay": (at_least(0), "a coefficient >= 0"),
    "agent.l2": (at_least(0), "a coefficient >= 0"),
    "agent.regen": (at_least(0), "a coefficient >= 0"),
    "agent.max_grad_norm": (at_least(0), ">= 0 (0 is off)"),
    "agent.sigma_ratio": (lambda v: v > 0, "a ratio > 0"),
    "network.noisy_sigma0": (at_least(0), "a noise scale >= 0"),
    "replay.priority_exponent": (at_least(0), "an exponent >= 0 (0 is uniform)"),
    "replay.importance_exponent": (within(0, 1), "an exponent in [0, 1]"),
    "network.num_atoms": (at_least(2), ">= 2 atoms"),
    "network.cnn_hidden": (at_least(1), "a width >= 1"),
    "network.mlp_hidden": (lambda v: all(w >= 1 for w in v), "widths >= 1"),
    "env.num_envs": (at_least(1), ">= 1"),
    "env.sticky_actions": (within(0, 1), "a probability in [0, 1]"),
    "env.frame_skip": (at_least(1), ">= 1"),
    "env.frame_stack": (at_least(1), ">= 1"),
    "env.noop_max": (at_least(0), ">= 0"),
    "env.max_episode_frames": (at_least(1), ">= 1"),
    "env.switch_every": (at_least(0), ">= 0 agent steps per game (0: one game, no switching)"),
    "train.total_steps": (at_least(1), "a number of steps > 0"),
    "train.seed": (within(0, 2**32 - 1), "a seed from 0 to 2**32 - 1"),
    "train.checkpoint_interval": (at_least(1), ">= 1"),
    "train.keep_checkpoints": (at_least(1), ">= 1"),
    "train.log_interval": (at_least(1), ">= 1"),
    "train.threads": (at_least(0), ">= 0 (0 keeps torch's default)"),
    "eval.interval": (at_least(0), ">= 0 (0 is off)"),
    "eval.episodes": (at_least(1), ">= 1 game"),
    "eval.num_envs": (at_least(1), ">= 1"),
    "probes.interval": (at_least(1), ">= 1"),
    "probes.fit_interval": (at_least(0), ">= 0 (0 is off)"),
    "probes.batch_size": (at_least(2), ">= 2 states"),
    "probes.refresh_interval": (at_least(1), ">= 1"),
    "probes.fit_steps": (at_least(1), ">= 1"),
    "probes.dormant_tau": (at_least(0), "a threshold >= 0 (0: dead units only)"),
    "interventions.redo.interval": (at_least(1), ">= 1 update"),
    "interventions.redo.tau": (at_least(0), "a threshold >= 0 (0: dead units only)"),
    "interventions.shrink_perturb.interval": (at_least(1), ">= 1 update"),
    "interventions.reset_head.interval": (at_least(1), ">= 1 update"),
    "interventions.reset_head.layers": (at_least(1), ">= 1 layer"),
    "interventions.inject.at": (at_least(1), ">= 1 update"),
}
"""Per-key bounds: (predicate, what the key accepts)."""


def check_values(config: Config) -> None:
    """Refuse impossible values before anything starts."""
    flat = flatten(dataclasses.asdict(config))
    for key, (ok, accepted) in RULES.items():
        if not ok(flat[key]):
            raise UserError(
                f"Config value {key} = {flat[key]!r} is impossible; it needs {accepted}."
            )
    for ok, key, accepted in joint_rules(config):
        if not ok:
            raise UserError(
                f"Config value {key} = {flat[key]!r} is impossible; it needs {accepted}."
            )


def joint_rules(c: Config) -> list[tuple[bool, str, str]]:
    """(holds, key, what it needs) for the rules that tie two keys together."""
    a, r = c.agent, c.replay
    room = c.env.num_envs * (c.env.frame_stack + a.n_step + 2)
    return [
        (
            a.batch_size <= r.capacity,
            "agent.batch_size",
            f"a batch no larger than replay.capacity ({r.capacity})",
        ),
        (
            a.epsilon_end <= a.epsilon_start,
            "agent.epsilon_end",
            f"a value <= agent.epsilon_start ({a.epsilon_start})",
        ),
        (
            a.loss != "c51" or a.value_transform == "none",
            "agent.value_transform",
            "'none' with c51, whose projection needs a linear Bellman operator",
        ),
        (
            c.network.v_min < c.network.v_max,
            "network.v_min",
            f"a value below network.v_max ({c.network.v_max})",
        ),
        (
            r.capacity >= room,
            "replay.capacity",
            f"room for a few transitions per env (at least {room})",
        ),
        (
            c.probes.ntk_batch <= c.probes.batch_size and c.probes.ntk_batch >= 0,
            "probes.ntk_batch",
            f"0 (off) up to probes.batch_size ({c.probes.batch_size})",
        ),
        (
            not (c.interventions.inject.enabled and c.network.noisy),
            "interventions.inject.enabled",
            "a network without noisy layers (the fresh head and its frozen copy would draw "
            "different noise, so injection would change the output): drop inject or noisy",
        ),
    ]


RESUMABLE_KEYS = ("train.total_steps", "train.device", "train.threads")
"""Config keys a resumed run may change: its budget, and where and how fast it runs."""


def changed_keys(config: Config, saved: Config) -> list[str]:
    """Keys whose values differ between `config` and a run's `saved` config, beyond the
    RESUMABLE_KEYS: resuming the run under `config` would make it another run."""
    mine, theirs = flatten(to_dict(config)), flatten(to_dict(saved))
    return [k for k in mine if mine[k] != theirs.get(k) and k not in RESUMABLE_KEYS]


def to_dict(config: Config) -> dict:
    """The resolved config as plain YAML-ready data (tuples become lists)."""
    return unflatten(
        {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in flatten(dataclasses.asdict(config)).items()
        }
    )
