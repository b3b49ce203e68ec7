"""Sequential ancestral sampling of an autoregressive image model as one compiled program.

``x ~ Π_{i,j,c} p(k_ijc | k_<ijc)`` (van den Oord et al. 2016a, eq. 1): a ``lax.fori_loop`` over the
``H·W·C`` sub-pixels in raster-then-colour order; each step is one network forward on the partial image and
fills one sub-pixel of every example. NFE = ``H·W·C``. Temperature is an array (no recompilation).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gm_jax.autoregressive.likelihood import split_mixture_params


def sample_categorical(key: jax.Array, logits: jax.Array, temperature: jax.Array) -> jax.Array:
    """``k ~ softmax(logits / T)`` (temperature ``T > 0``; ``T = 1`` is the model)."""
    return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)


def sample_discretized_logistic_mixture(key: jax.Array, params: jax.Array, temperature: jax.Array,
                                        levels: int) -> jax.Array:
    """Draw from the discretized logistic mixture (Salimans et al. 2017, eq. 2): component
    ``m ~ softmax(logits / T)``, ``u = μ_m + T·s_m·log(v/(1 − v))`` with ``v ~ U(0, 1)`` (inverse logistic
    CDF), then the level whose bin holds ``u``: ``k = clip(round((u + 1)(L − 1)/2), 0, L − 1)``."""
    comp_key, u_key = jax.random.split(key)
    logit_w, mean, log_scale = split_mixture_params(params)
    m = jax.random.categorical(comp_key, logit_w / temperature, axis=-1)
    mu = jnp.take_along_axis(mean, m[..., None], axis=-1)[..., 0]
    s = jnp.exp(jnp.take_along_axis(log_scale, m[..., None], axis=-1)[..., 0])
    v = jax.random.uniform(u_key, mu.shape, minval=1e-5, maxval=1.0 - 1e-5)
    u = mu + temperature * s * (jnp.log(v) - jnp.log1p(-v))
    return jnp.clip(jnp.round((u + 1.0) * (levels - 1) / 2.0), 0, levels - 1).astype(jnp.int32)


def sequential_sample(output_fn: Callable[[jax.Array], jax.Array],
                      draw_fn: Callable[[jax.Array, jax.Array], jax.Array],
                      key: jax.Array, shape: tuple[int, int, int, int]) -> tuple[jax.Array, dict[str, int]]:
    """Sample integer images ``[N, H, W, C]`` sub-pixel by sub-pixel (van den Oord et al. 2016a, eq. 1).

    ``output_fn(k) -> [N, H, W, C, P]`` maps the partial integer image (unfilled sub-pixels are 0) to the
    per-sub-pixel distribution parameters; ``draw_fn(key, params [N, P]) -> [N]`` draws one sub-pixel.
    Step ``t`` fills sub-pixel ``(i, j, c) = (t // (W·C), (t // C) mod W, t mod C)`` with key
    ``fold_in(key, t)``. Returns ``(k, {"nfe": H·W·C})``.
    """
    n, height, width, colors = shape

    def step(t: jax.Array, k: jax.Array) -> jax.Array:
        i, j, c = t // (width * colors), (t // colors) % width, t % colors
        out = output_fn(k)
        params = out[:, i, j, c]
        value = draw_fn(jax.random.fold_in(key, t), params)
        return k.at[:, i, j, c].set(value)

    k0 = jnp.zeros(shape, jnp.int32)
    k = jax.lax.fori_loop(0, height * width * colors, step, k0)
    return k, {"nfe": height * width * colors}
