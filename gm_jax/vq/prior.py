"""Autoregressive prior over the VQ-VAE code grid (van den Oord et al. 2017, sec. 3.3 and 4.2): a gated
PixelCNN on the ``h × w`` grid of code indices with a ``K``-way softmax per position,
``p(k) = Π_{i,j} p(k_ij | k_<ij)`` (van den Oord et al. 2016b). Sampling draws a code grid sequentially
(NFE = h·w) and decodes it with the VQ-VAE decoder.

Only the pure functions are here; a training config for stage 2 (fit the prior on codes of a trained
VQ-VAE) is not provided yet.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gm_jax.autoregressive.likelihood import image_log_prob, levels_to_unit
from gm_jax.autoregressive.model import GatedPixelCNN
from gm_jax.autoregressive.sample import sample_categorical, sequential_sample
from gm_jax.core.errors import require
from gm_jax.core.state import PyTree


def code_prior(num_codes: int, hidden: int = 32, num_layers: int = 4, kernel_size: int = 3,
               num_classes: int = 0) -> GatedPixelCNN:
    """Gated PixelCNN over one-channel code grids with ``num_codes`` levels (K-way softmax)."""
    require(num_codes >= 2, f"a code prior needs num_codes >= 2, got {num_codes}")
    return GatedPixelCNN(num_colors=1, params_per_color=num_codes, hidden=hidden, num_layers=num_layers,
                         kernel_size=kernel_size, num_classes=num_classes)


def code_prior_log_prob(prior: GatedPixelCNN, params: PyTree, codes: jax.Array,
                        label: jax.Array | None = None) -> jax.Array:
    """``log p(k) = Σ_{i,j} log softmax(f(k_<ij))[k_ij]`` in nats per grid, ``codes [B, h, w]`` int
    (van den Oord et al. 2016a, eq. 1 on code indices)."""
    k = codes[..., None]
    outputs = prior.apply(params, levels_to_unit(k, prior.params_per_color), label)
    return image_log_prob(outputs, k, "categorical", prior.params_per_color)


def sample_code_grid(prior: GatedPixelCNN, params: PyTree, key: jax.Array, num: int,
                     grid: tuple[int, int], temperature: jax.Array,
                     label: jax.Array | None = None) -> tuple[jax.Array, dict[str, int]]:
    """``num`` code grids ``[num, h, w]`` drawn position by position from the prior at ``temperature``;
    ``info["nfe"] = h·w``."""
    levels = prior.params_per_color

    def output_fn(k: jax.Array) -> jax.Array:
        return prior.apply(params, levels_to_unit(k, levels), label)

    def draw(draw_key: jax.Array, logits: jax.Array) -> jax.Array:
        return sample_categorical(draw_key, logits, jnp.asarray(temperature, jnp.float32))

    k, info = sequential_sample(output_fn, draw, key, (num, *grid, 1))
    return k[..., 0], info
