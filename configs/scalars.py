"""How config text becomes values. PyYAML reads YAML 1.1, where `010` is octal 8, `1:30` is 90
(base 60), `0x10` is 16 and `on`, `yes`, `off`, `no` are booleans, while `1e-4` is a string.
Config files and --set values are read instead with `ConfigLoader`: numbers only in decimal,
booleans only as true or false, and everything else a string, which a key that takes a number or
a boolean refuses with `misread`'s words on what YAML 1.1 would have made of it."""

from __future__ import annotations

import re
from typing import Any

import yaml

DIGITS = r"[0-9](?:_?[0-9])*"
INT = r"[-+]?(?:0|[1-9](?:_?[0-9])*)"
"""A whole number in decimal: no leading zero (YAML 1.1 reads 010 as octal), underscores only
between digits (as Python writes 1_000)."""
FLOAT = (
    rf"[-+]?(?:{DIGITS}\.(?:{DIGITS})?|\.{DIGITS}|{DIGITS}(?=[eE]))(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
"""A number with a point or an exponent (1.5, .5, 5., 1e-4, 2.5E+3), or YAML's .inf and .nan."""
IMPLICIT = {
    "tag:yaml.org,2002:bool": r"true|True|TRUE|false|False|FALSE",
    "tag:yaml.org,2002:int": INT,
    "tag:yaml.org,2002:float": FLOAT,
    "tag:yaml.org,2002:null": r"~|null|Null|NULL|",
    "tag:yaml.org,2002:merge": r"<<",
}
"""The plain scalars that are not strings: the YAML 1.2 core schema's, in decimal only and with
Python's underscores; dates, base 60, octal, hexadecimal and yes/no/on/off stay strings."""


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader with only the `IMPLICIT` readings of plain scalars."""

    yaml_implicit_resolvers: dict = {}  # a registry of its own, not SafeLoader's


for _tag, _pattern in IMPLICIT.items():
    ConfigLoader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), None)


def read(text: str) -> Any:
    """Read YAML text with `ConfigLoader`."""
    return yaml.load(text, Loader=ConfigLoader)


def number(text: str, expected: str) -> int | float:
    """The decimal number `text` says (an int when it is written as one); ValueError(expected, with
    `misread`'s advice) for any other text."""
    if re.fullmatch(INT, text) or re.fullmatch(FLOAT, text):
        return read(text)
    raise ValueError(f"{expected}{misread(text, numeric=True)}")


def misread(text: str, *, numeric: bool) -> str:
    """Advice for text that a number key (`numeric`) or a boolean key refuses, when YAML 1.1 reads
    it as one or it has a leading zero: ': YAML 1.1 would read 010 as 8 (octal), so write 10
    (or 8)'; '' otherwise."""
    old = yaml11(text)
    if numeric and re.fullmatch(r"[-+]?0[0-9_]+", text):
        written = int(text.replace("_", ""), 10)
        if isinstance(old, int):
            return f": YAML 1.1 would read {text} as {old} (octal), so write {written} (or {old})"
        return f": write {written}, without the leading zero"
    if numeric and isinstance(old, int | float) and not isinstance(old, bool):
        return f": YAML 1.1 would read {text} as {old!r} ({form(text)}), so write {old!r}"
    if not numeric and isinstance(old, bool):
        return f": YAML 1.1 would read {text} as {str(old).lower()}, so write {str(old).lower()}"
    return ""


def form(text: str) -> str:
    """How YAML 1.1 reads a number that is not decimal."""
    digits = text.lstrip("+-").lower()
    if ":" in digits:
        return "base 60"
    if digits.startswith("0x"):
        return "hexadecimal"
    if digits.startswith("0b"):
        return "binary"
    return "underscores dropped"


def yaml11(text: str) -> Any:
    """What PyYAML's YAML 1.1 makes of `text` (None if it cannot read it)."""
    try:
        return yaml.safe_load(text)
    except Exception:  # any reading error: there is no YAML 1.1 value to tell of
        return None
