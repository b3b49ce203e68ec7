"""Core: errors, PRNG helpers, the train state and the family protocol (no networks, no I/O).

Names are imported from their modules on first use (PEP 562), so ``gm_jax.core.errors`` and
``gm_jax.core.options`` can be used without importing JAX (the CLI answers ``--help`` and argument errors
before JAX starts).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "bin_width": "dequantize", "uniform_dequantize": "dequantize",
    "CheckpointError": "errors", "ConfigError": "errors", "DataError": "errors", "GmJaxError": "errors",
    "TrainingDiverged": "errors", "check_choice": "errors", "require": "errors",
    "CONDITIONING_KINDS": "family", "Batch": "family", "DataSpec": "family", "Family": "family",
    "FamilyInputs": "family", "Metrics": "family", "Upstream": "family",
    "make_optimizer": "optim",
    "Option": "options", "check_options": "options", "merge_options": "options",
    "example_keys": "rng", "per_example_normal": "rng", "purpose_key": "rng", "seed_key": "rng", "step_key": "rng",
    "dopri5_step": "runge_kutta",
    "PyTree": "state", "TrainState": "state", "apply_gradients": "state", "ema_update": "state",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'gm_jax.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gm_jax.core.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
