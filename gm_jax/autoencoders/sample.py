"""Sampling from the VAE prior, latent interpolations (linear and spherical) and reconstructions.

All functions are pure; ``temperature`` and the interpolation weights are arrays, so changing them does not
recompile a jitted caller.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gm_jax.autoencoders.model import VAE, Autoencoder
from gm_jax.core.errors import check_choice, require


def sample_prior_latents(key: jax.Array, num: int, latent_dim: int,
                         temperature: float | jax.Array = 1.0) -> jax.Array:
    """``z = τ ε``, ``ε ~ N(0, I_d)``: ``num`` latents from the prior ``N(0, τ² I)`` (τ = 1 is the model's
    prior; τ < 1 trades diversity for fidelity, Kingma & Dhariwal 2018, sec. 3)."""
    return jnp.asarray(temperature, jnp.float32) * jax.random.normal(key, (num, latent_dim))


def linear_interpolation(z0: jax.Array, z1: jax.Array, t: jax.Array) -> jax.Array:
    """``z(t) = (1 − t) z0 + t z1`` for each weight in ``t`` (shape ``[n]``); result ``[n, *z0.shape]``."""
    t = jnp.asarray(t, z0.dtype).reshape((-1,) + (1,) * z0.ndim)
    return (1.0 - t) * z0 + t * z1


def spherical_interpolation(z0: jax.Array, z1: jax.Array, t: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Spherical linear interpolation (Shoemake 1985; White 2016 for latent spaces) along the last axis:
    ``z(t) = sin((1 − t) Ω)/sin Ω · z0 + sin(t Ω)/sin Ω · z1``, ``cos Ω = ⟨z0, z1⟩ / (‖z0‖ ‖z1‖)``; falls
    back to the linear path when ``sin Ω`` is below ``eps`` (parallel vectors). Result ``[n, *z0.shape]``."""
    t = jnp.asarray(t, z0.dtype).reshape((-1,) + (1,) * z0.ndim)
    n0 = jnp.linalg.norm(z0, axis=-1, keepdims=True)
    n1 = jnp.linalg.norm(z1, axis=-1, keepdims=True)
    cos = jnp.clip(jnp.sum(z0 * z1, axis=-1, keepdims=True) / jnp.maximum(n0 * n1, eps), -1.0, 1.0)
    omega = jnp.arccos(cos)
    sin = jnp.sin(omega)
    safe = sin > eps
    sin_safe = jnp.where(safe, sin, 1.0)
    w0 = jnp.where(safe, jnp.sin((1.0 - t) * omega) / sin_safe, 1.0 - t)
    w1 = jnp.where(safe, jnp.sin(t * omega) / sin_safe, t)
    return w0 * z0 + w1 * z1


def interpolation_grid(z_start: jax.Array, z_end: jax.Array, num_steps: int, method: str = "spherical"
                       ) -> jax.Array:
    """Rows of interpolations: ``z_start``, ``z_end`` ``[n, d]`` → ``[n, num_steps, d]``, row ``i`` going
    from ``z_start[i]`` (t = 0) to ``z_end[i]`` (t = 1) with evenly spaced t, by the 'linear' or
    'spherical' path."""
    check_choice("interpolation method", method, ("linear", "spherical"))
    require(num_steps >= 2, f"num_steps must be >= 2 to include both end points, got {num_steps}")
    t = jnp.linspace(0.0, 1.0, num_steps)
    path = linear_interpolation if method == "linear" else spherical_interpolation
    return jnp.swapaxes(path(z_start, z_end, t), 0, 1)


def decode_latents(model: VAE | Autoencoder, params: Any, z: jax.Array) -> jax.Array:
    """Decoder means ``E[x|z]`` for latents of any leading shape ``[..., d]``."""
    lead = z.shape[:-1]
    x = model.apply({"params": params}, z.reshape((-1, z.shape[-1])), method=model.decoder_mean)
    return x.reshape(lead + x.shape[1:])


def reconstruct(model: VAE | Autoencoder, params: Any, x: jax.Array) -> jax.Array:
    """``E[x | z = code(x)]``: the decoder mean at the encoder's code (the posterior mean μ(x) for a VAE)."""
    if isinstance(model, VAE):
        z = model.apply({"params": params}, x, method=model.encode)[0]
    else:
        z = model.apply({"params": params}, x, method=model.encode)
    return model.apply({"params": params}, z, method=model.decoder_mean)
