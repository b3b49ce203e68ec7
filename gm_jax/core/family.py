"""The one protocol every model family implements, and the description of the data it is given.

A family module exposes ``make_family(config, spec) -> Family``: a bundle of pure functions that close
over static configuration (network shapes, optimizers). The training loop, checkpoints and the CLI only
ever see this bundle; they never ask which family they run.

Batches are dicts of arrays: ``{"x": float32 [B, ...], "label": int32 [B]}`` (``label`` present when the
dataset has classes). Images are ``[B, H, W, C]`` in the range given by ``DataSpec.value_range``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax

from gm_jax.core.state import PyTree, TrainState

Batch = Mapping[str, jax.Array]
Metrics = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a family needs to know about its data: the shape of one example (no batch axis), the number of
    classes (0 when unlabelled), the value range of ``x`` (``(-1, 1)``, ``(0, 1)``), whether ``x`` is
    binary, and the number of discrete levels of the raw data (256 for 8-bit images, 0 for continuous)."""

    shape: tuple[int, ...]
    num_classes: int = 0
    value_range: tuple[float, float] = (-1.0, 1.0)
    binary: bool = False
    levels: int = 0
    name: str = ""

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


@dataclasses.dataclass(frozen=True)
class Family:
    """Pure functions of one model family.

    init(key, example_batch) -> TrainState
    train_step(state, batch, key) -> (state, metrics)        # increments state.step by one
    sample(params, key, num, **kwargs) -> (x, info)          # optional; info["nfe"] where it applies
                                                             # called from the host; compiles its own
                                                             # chain; common kwargs: sampler, steps, eta,
                                                             # guidance, label, temperature
    evaluate(params, batch, key) -> metrics                  # optional; e.g. ELBO, NLL, bits/dim
    """

    name: str
    init: Callable[[jax.Array, Batch], TrainState]
    train_step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]
    sample: Callable[..., tuple[jax.Array, dict[str, Any]]] | None = None
    evaluate: Callable[[PyTree, Batch, jax.Array], Metrics] | None = None
