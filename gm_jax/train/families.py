"""Which module builds each family named by ``config.model.family``.

Modules are imported on first use, so a run pays only for the family it trains. Every module provides
``make_family(config, spec) -> gm_jax.core.Family`` and ``model_defaults() -> ConfigDict``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from gm_jax.core.errors import check_choice
from gm_jax.core.family import DataSpec, Family

FAMILY_MODULES: dict[str, str] = {
    "autoencoder": "gm_jax.autoencoders.family",
    "vae": "gm_jax.autoencoders.family",
    "gan": "gm_jax.gan.family",
    "gmm": "gm_jax.classical.family",
    "bernoulli_mixture": "gm_jax.classical.family",
    "rbm": "gm_jax.classical.family",
    "flow": "gm_jax.flows.family",
    "pixelcnn": "gm_jax.autoregressive.family",
    "vqvae": "gm_jax.vq.family",
    "diffusion": "gm_jax.diffusion.family",
    "flow_matching": "gm_jax.flow_matching.family",
}


def family_module(name: str) -> Any:
    """The module that implements family ``name``."""
    check_choice("model.family", name, FAMILY_MODULES)
    return importlib.import_module(FAMILY_MODULES[name])


def build_family(config: Any, spec: DataSpec, eval_batches: Callable[[int], Iterator[dict]] | None = None
                 ) -> Family:
    """``make_family(config, spec)`` of the module named by ``config.model.family``. ``eval_batches``
    (``batch_size -> iterator of eval batches``, e.g. ``Pipeline.eval_batches``) is passed on to the families
    whose ``make_family`` takes it (image-to-image GANs translate eval images by default), so no family
    module imports the data layer."""
    make = family_module(config.model.family).make_family
    if eval_batches is not None and "eval_batches" in inspect.signature(make).parameters:
        return make(config, spec, eval_batches=eval_batches)
    return make(config, spec)
