"""Autoregressive prior over the VQ-VAE code grid (van den Oord et al. 2017, sec. 3.3 and 4.2): a gated
PixelCNN (van den Oord et al. 2016b; :mod:`gm_jax.nn.pixelcnn`) on the ``h × w`` grid of code indices, fed
the codes one-hot, with a ``K``-way softmax per position:
``log p(k) = Σ_{i,j} log softmax(f(k_<ij))[k_ij]`` (van den Oord et al. 2016a, eq. 1 on code indices).
Sampling draws a code grid position by position in raster order (NFE = h·w) as one compiled loop.

These are pure functions; :mod:`gm_jax.vq.prior_family` trains the prior on the codes of a trained VQ-VAE.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gm_jax.core.errors import require
from gm_jax.core.state import PyTree
from gm_jax.nn.pixelcnn import GatedPixelCNN


def code_prior(num_codes: int, hidden: int = 32, num_layers: int = 4, kernel_size: int = 3,
               num_classes: int = 0) -> GatedPixelCNN:
    """Gated PixelCNN over code grids: one variable per position, ``num_codes`` logits (K-way softmax).
    The receptive field covers every earlier position when ``num_layers · (kernel_size // 2) >= max(h, w) − 1``."""
    require(num_codes >= 2, f"a code prior needs num_codes >= 2, got {num_codes}")
    return GatedPixelCNN(num_colors=1, params_per_color=num_codes, hidden=hidden, num_layers=num_layers,
                         kernel_size=kernel_size, num_classes=num_classes)


def code_inputs(codes: jax.Array, num_codes: int) -> jax.Array:
    """Network input of code grids ``[B, h, w]`` (int): their one-hot encoding ``[B, h, w, K]``."""
    return jax.nn.one_hot(codes, num_codes, dtype=jnp.float32)


def code_prior_init(prior: GatedPixelCNN, key: jax.Array, grid: tuple[int, int]) -> PyTree:
    """Parameters of ``prior`` for code grids of size ``grid = (h, w)``."""
    dummy = jnp.zeros((1, *grid), jnp.int32)
    label = jnp.zeros((1,), jnp.int32) if prior.num_classes > 0 else None
    return prior.init(key, code_inputs(dummy, prior.params_per_color), label)


def code_prior_logits(prior: GatedPixelCNN, params: PyTree, codes: jax.Array,
                      label: jax.Array | None = None) -> jax.Array:
    """Logits ``[B, h, w, K]`` of ``p(k_ij | k_<ij)`` for every position of ``codes [B, h, w]``."""
    return prior.apply(params, code_inputs(codes, prior.params_per_color), label)[..., 0, :]


def code_prior_log_prob(prior: GatedPixelCNN, params: PyTree, codes: jax.Array,
                        label: jax.Array | None = None) -> jax.Array:
    """``log p(k) = Σ_{i,j} log softmax(f(k_<ij))[k_ij]`` in nats per grid, ``codes [B, h, w]`` int
    (van den Oord et al. 2016a, eq. 1 on code indices)."""
    log_p = jax.nn.log_softmax(code_prior_logits(prior, params, codes, label), axis=-1)
    picked = jnp.take_along_axis(log_p, codes[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.sum(picked, axis=(1, 2))


def sample_code_grid(prior: GatedPixelCNN, params: PyTree, key: jax.Array, num: int,
                     grid: tuple[int, int], temperature: jax.Array,
                     label: jax.Array | None = None) -> tuple[jax.Array, dict[str, int]]:
    """``num`` code grids ``[num, h, w]`` drawn position by position (raster order) from
    ``softmax(logits / T)`` (van den Oord et al. 2016a, eq. 1): step ``t`` fills ``(t // w, t mod w)`` with
    key ``fold_in(key, t)``; unfilled positions hold 0, which the causal network never sees.
    ``info["nfe"] = h·w``."""
    h, w = grid
    t_inv = 1.0 / jnp.asarray(temperature, jnp.float32)

    def step(t: jax.Array, k: jax.Array) -> jax.Array:
        i, j = t // w, t % w
        logits = code_prior_logits(prior, params, k, label)[:, i, j]
        return k.at[:, i, j].set(jax.random.categorical(jax.random.fold_in(key, t), logits * t_inv, axis=-1))

    k = jax.lax.fori_loop(0, h * w, step, jnp.zeros((num, h, w), jnp.int32))
    return k, {"nfe": h * w}
