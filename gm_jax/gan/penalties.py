"""Regularisers of the discriminator: WGAN-GP gradient penalty, R1, and spectral normalisation.

The penalties take the critic as a function ``critic(x) -> scores [B]`` (or ``[B, ...]``; the scores are
summed, which gives per-example input gradients because examples do not interact).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Critic = Callable[[jax.Array], jax.Array]


def _per_example_grad_norm(critic: Critic, x: jax.Array) -> jax.Array:
    grads = jax.grad(lambda v: jnp.sum(critic(v)))(x)
    return jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=-1) + 1e-12)


def interpolate(key: jax.Array, real: jax.Array, fake: jax.Array) -> jax.Array:
    """Random points on the segments between real and generated examples (Gulrajani et al. 2017, Alg. 1
    line 6): ``x_hat = eps * x + (1 - eps) * x_tilde`` with one ``eps ~ U[0, 1]`` per example."""
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(critic: Critic, real: jax.Array, fake: jax.Array, key: jax.Array,
                     target: float = 1.0) -> jax.Array:
    """WGAN-GP penalty (Gulrajani et al. 2017, eq. 3) without its weight lambda:
    ``E_{x_hat} (||grad_x D(x_hat)||_2 - target)^2`` at interpolates drawn with ``key``."""
    x_hat = interpolate(key, real, jax.lax.stop_gradient(fake))
    return jnp.mean((_per_example_grad_norm(critic, x_hat) - target) ** 2)


def r1_penalty(critic: Critic, real: jax.Array) -> jax.Array:
    """R1 regulariser (Mescheder et al. 2018, eq. 9) without its weight gamma:
    ``1/2 E_{x ~ p_data} ||grad_x D(x)||^2``; the discriminator loss adds ``gamma * r1_penalty``."""
    grads = jax.grad(lambda v: jnp.sum(critic(v)))(real)
    return 0.5 * jnp.mean(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=-1))


def _l2_normalize(v: jax.Array, eps: float = 1e-12) -> jax.Array:
    return v / (jnp.linalg.norm(v) + eps)


def spectral_normalize(weight: jax.Array, u: jax.Array, num_iters: int = 1
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Spectral normalisation ``W_SN = W / sigma(W)`` (Miyato et al. 2018, eq. 8, Alg. 1).

    ``weight`` is a Dense/Conv kernel ``[..., in, out]`` viewed as the matrix ``W [prod(...) * in, out]``;
    ``u`` ``[out]`` is the persistent estimate of the top right singular vector of ``W``. ``num_iters`` power
    iterations ``v = W u / ||W u||``, ``u = W^T v / ||W^T v||`` refine it and ``sigma = v^T W u``.
    Returns ``(W / sigma, new_u, sigma)``; the vectors carry no gradient, as in the paper.
    """
    matrix = weight.reshape(-1, weight.shape[-1])
    u = jax.lax.stop_gradient(u)

    def power_step(_: int, u_: jax.Array) -> jax.Array:
        v_ = _l2_normalize(matrix @ u_)
        return _l2_normalize(matrix.T @ v_)

    u = jax.lax.stop_gradient(jax.lax.fori_loop(0, num_iters, power_step, u))
    v = jax.lax.stop_gradient(_l2_normalize(matrix @ u))
    sigma = v @ matrix @ u
    return weight / sigma, u, sigma


def init_spectral_vector(key: jax.Array, weight: jax.Array) -> jax.Array:
    """A random unit vector ``u`` of size ``weight.shape[-1]`` to start the power iteration."""
    return _l2_normalize(jax.random.normal(key, (weight.shape[-1],), weight.dtype))
