"""Run-time options as data: what a sampler, a family's ``sample`` or its ``evaluate`` accepts.

An :class:`Option` is a name, a type, a range or a set of choices, a default and one line of help. The
sampler registry, the families and the CLI share this one shape: the CLI builds its flags and its ``--help``
from declarations, validates what a user typed against them before any model work starts, and rejects a
flag that the model does not take with one line naming what it does take. Nothing inspects signatures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gm_jax.core.errors import ConfigError

OPTION_TYPES = {"int": int, "float": float, "str": str}


@dataclasses.dataclass(frozen=True)
class Option:
    """One run-time option.

    ``kind``: 'int', 'float' or 'str'. ``low``/``high`` bound numbers (``None``: unbounded; every float must
    be finite); ``low_open``/``high_open`` exclude the bound itself. ``choices`` restricts strings.
    ``default`` is what the family uses when the option is not given (``None``: "not given" has a meaning
    of its own, e.g. an unconditional draw when no label is given)."""

    name: str
    kind: str
    help: str = ""
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in OPTION_TYPES:
            raise ValueError(f"option {self.name}: kind must be one of {sorted(OPTION_TYPES)}, got {self.kind!r}")

    def range_text(self) -> str:
        """The allowed values in words, e.g. ``in [0, 1]``, ``> 0``, ``one of: ddim, ddpm``."""
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "finite" if self.kind == "float" else ""

    def check(self, value: Any) -> Any:
        """``value`` converted to the option's type; a one-line ConfigError when it is out of range."""
        flag = f"--{self.name}"
        try:
            v = OPTION_TYPES[self.kind](value)
        except (TypeError, ValueError):
            raise ConfigError(f"{flag} must be {'an' if self.kind == 'int' else 'a'} {self.kind}, got {value!r}"
                              ) from None
        if self.kind == "int" and isinstance(value, float) and value != v:
            raise ConfigError(f"{flag} must be an integer, got {value!r}")
        if self.kind == "float" and not math.isfinite(v):
            raise ConfigError(f"{flag} must be finite, got {value!r}")
        bad = (self.choices and v not in self.choices) or (
            self.low is not None and (v <= self.low if self.low_open else v < self.low)) or (
            self.high is not None and (v >= self.high if self.high_open else v > self.high))
        if bad:
            raise ConfigError(f"{flag} must be {self.range_text()}, got {value!r}")
        return v

    def narrowed(self, **changes: Any) -> Option:
        """A copy with some fields changed (a family narrows a range to its config, e.g. steps <= T)."""
        return dataclasses.replace(self, **changes)

    def help_text(self) -> str:
        parts = [self.help, self.range_text()]
        if self.default is not None:
            parts.append(f"default {self.default}")
        return "; ".join(p for p in parts if p)


def option_names(options: Iterable[Option]) -> list[str]:
    return [o.name for o in options]


def check_options(given: Mapping[str, Any], options: Sequence[Option], what: str) -> dict[str, Any]:
    """Validate ``given`` (name -> value; ``None`` values are dropped as "not given") against ``options``.

    Unknown names raise ``ConfigError("<what> does not take --NAME; it takes: ...")``; values are converted
    and range-checked by :meth:`Option.check`. Returns the converted values."""
    by_name = {o.name: o for o in options}
    out = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in by_name:
            takes = ", ".join("--" + n for n in by_name) or "no options"
            raise ConfigError(f"{what} does not take --{name}; it takes: {takes}")
        out[name] = by_name[name].check(value)
    return out


def merge_options(*groups: Iterable[Option]) -> tuple[Option, ...]:
    """Options of several groups in order, the first declaration of each name kept."""
    seen: dict[str, Option] = {}
    for group in groups:
        for o in group:
            seen.setdefault(o.name, o)
    return tuple(seen.values())


__all__ = ["OPTION_TYPES", "Option", "check_options", "merge_options", "option_names"]
