"""Core: errors, PRNG helpers, the train state and the family protocol (no networks, no I/O)."""

from gm_jax.core.dequantize import bin_width, uniform_dequantize
from gm_jax.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GmJaxError,
    TrainingDiverged,
    check_choice,
    require,
)
from gm_jax.core.family import CONDITIONING_KINDS, Batch, DataSpec, Family, FamilyInputs, Metrics, Upstream
from gm_jax.core.optim import make_optimizer
from gm_jax.core.options import Option, check_options, merge_options
from gm_jax.core.rng import example_keys, per_example_normal, purpose_key, seed_key, step_key
from gm_jax.core.state import PyTree, TrainState, apply_gradients, ema_update

__all__ = [
    "CONDITIONING_KINDS", "FamilyInputs", "Option", "Upstream", "check_options", "merge_options",
    "Batch", "CheckpointError", "ConfigError", "DataError", "DataSpec", "Family", "GmJaxError", "Metrics",
    "PyTree", "TrainState", "TrainingDiverged", "apply_gradients", "bin_width", "check_choice", "ema_update",
    "example_keys", "make_optimizer", "per_example_normal", "purpose_key", "require", "seed_key", "step_key",
    "uniform_dequantize",
]
