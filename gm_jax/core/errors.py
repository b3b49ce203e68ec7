"""Errors a user can fix.

Every error raised for bad input is a :class:`GmJaxError` whose message is one line that names what was
wrong and how to fix it. The CLI prints that line and exits with status 2, without a traceback.
"""

from __future__ import annotations


class GmJaxError(Exception):
    """Base class: bad input, with a one-line message naming the problem and the fix."""


class ConfigError(GmJaxError, ValueError):
    """A config field, CLI flag or function argument has an invalid value."""


class DataError(GmJaxError):
    """A dataset cannot be found, prepared or read."""


class CheckpointError(GmJaxError):
    """A checkpoint or work directory is missing, corrupt or unwritable."""


class TrainingDiverged(GmJaxError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def require(condition: bool, message: str, error: type[GmJaxError] = ConfigError) -> None:
    """Raise ``error(message)`` unless ``condition`` holds (host-side checks only, not under ``jit``)."""
    if not condition:
        raise error(message)


def check_choice(kind: str, value: str, choices: list[str] | tuple[str, ...] | dict) -> None:
    """Raise a ConfigError naming the valid choices when ``value`` is not one of them."""
    names = sorted(choices)
    if value not in names:
        raise ConfigError(f"unknown {kind} {value!r}; choose one of: {', '.join(names)}")
