"""Regularisers of the discriminator: WGAN-GP gradient penalty, R1, and spectral normalisation (a pure
function and a linen wrapper :class:`SpectralNorm`).

The penalties take the critic as a function ``critic(x) -> scores [B]`` (or ``[B, ...]``; the scores are
summed, which gives per-example input gradients because examples do not interact).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

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


class SpectralNorm(nn.Module):
    """Spectral normalisation as a parametrization of any linen layer (Miyato et al. 2018, eq. 8, Alg. 1).

    Wraps ``layer`` (e.g. ``nn.Dense(64)`` or ``nn.Conv(32, (4, 4))``): every parameter of it named
    ``kernel`` is replaced, before the layer runs, by ``W / sigma(W)`` from :func:`spectral_normalize`, so the
    layer is (at most) 1-Lipschitz in the spectral norm of its kernel matrix ``[prod(...) * in, out]``. The
    trained parameters stay the raw ``W`` (under ``params/layer``). The persistent power-iteration vector of
    each kernel, and its last ``sigma``, live in the mutable collection ``collection`` ("spectral"); with
    ``update_stats=True`` each call runs ``num_iters`` power iterations and writes them back (apply with
    ``mutable=["spectral"]``), with ``update_stats=False`` the stored ``u`` is used as is.
    """

    layer: nn.Module
    num_iters: int = 1
    collection: str = "spectral"

    @nn.compact
    def __call__(self, *args: Any, update_stats: bool = False, **kwargs: Any) -> Any:
        initializing = self.is_initializing()

        def normalize_kernels(tree: Any) -> Any:
            flat = traverse_util.flatten_dict(flax.core.unfreeze(tree))
            out = {}
            for path, w in flat.items():
                if path[-1] != "kernel" or jnp.ndim(w) < 2:
                    out[path] = w
                    continue
                name = "_".join(str(p) for p in (path[1:] if path[0] == "params" else path))
                u_var = self.variable(self.collection, f"{name}_u",
                                      lambda w_=w: init_spectral_vector(self.make_rng("params"), w_))
                sigma_var = self.variable(self.collection, f"{name}_sigma", lambda: jnp.ones((), jnp.float32))
                w_sn, u_new, sigma = spectral_normalize(w, u_var.value, self.num_iters)
                if update_stats and not initializing:
                    u_var.value, sigma_var.value = u_new, jax.lax.stop_gradient(sigma)
                out[path] = w_sn
            return traverse_util.unflatten_dict(out)

        def forward(layer: nn.Module) -> Any:
            return layer(*args, **kwargs)

        return nn.map_variables(forward, "params", trans_in_fn=normalize_kernels, init=initializing,
                                mutable=True)(self.layer)
