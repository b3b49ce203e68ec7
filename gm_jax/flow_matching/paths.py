"""Conditional probability paths of flow matching (Lipman et al. 2023), time ``t`` from 0 (source noise
``x0``) to 1 (data ``x1``).

Both paths are affine in the endpoints: ``x_t = a(t) x1 + b(t) x0`` and the conditional target velocity is
its time derivative ``u_t = a'(t) x1 + b'(t) x0`` (Lipman et al. 2023, eq. 15 written in terms of
``x0``; Tong et al. 2023, eq. 13).

- 'linear' (the OT path, Lipman et al. 2023, eq. 20): ``a = t``, ``b = 1 - (1 - sigma_min) t``;
  ``sigma_min = 0`` is rectified flow (Liu et al. 2023, eq. 1) and I-CFM (Tong et al. 2023).
- 'vp' (variance preserving, Lipman et al. 2023, eq. 19; Song et al. 2021): ``a = alpha(1 - t)``,
  ``b = sqrt(1 - alpha(1 - t)^2)`` with ``alpha(s) = exp(-T(s) / 2)``,
  ``T(s) = beta_min s + (beta_max - beta_min) s^2 / 2``. At ``t = 1`` ``b = 0`` and ``b'`` is infinite:
  train and sample on ``t <= 1 - t_eps``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice

PATHS = ("linear", "vp")


def path_coefficients(path: str, t: jax.Array, sigma_min: float = 0.0, beta_min: float = 0.1,
                      beta_max: float = 20.0) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(a, b, da/dt, db/dt)`` of ``x_t = a x1 + b x0`` for the path (Lipman et al. 2023, eqs. 19-20)."""
    check_choice("flow matching path", path, PATHS)
    t = jnp.asarray(t, jnp.float32)
    if path == "linear":
        return t, 1.0 - (1.0 - sigma_min) * t, jnp.ones_like(t), jnp.full_like(t, -(1.0 - sigma_min))
    s = 1.0 - t
    alpha = jnp.exp(-0.5 * (beta_min * s + 0.5 * (beta_max - beta_min) * s**2))
    dalpha_dt = 0.5 * (beta_min + (beta_max - beta_min) * s) * alpha  # d/dt alpha(1 - t)
    sigma = jnp.sqrt(1.0 - alpha**2)
    return alpha, sigma, dalpha_dt, -alpha * dalpha_dt / sigma


def _expand(c: jax.Array, x: jax.Array) -> jax.Array:
    """Broadcast a scalar or per-example ``[B]`` coefficient against ``x [B, ...]``."""
    c = jnp.asarray(c)
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim)) if c.ndim else c


def sample_path(path: str, t: jax.Array, x0: jax.Array, x1: jax.Array, **kwargs: float) -> jax.Array:
    """``x_t = a(t) x1 + b(t) x0`` (Lipman et al. 2023, eq. 11 with ``x = mu_t + sigma_t x0``)."""
    a, b, _, _ = path_coefficients(path, t, **kwargs)
    return _expand(a, x1) * x1 + _expand(b, x0) * x0


def target_velocity(path: str, t: jax.Array, x0: jax.Array, x1: jax.Array, **kwargs: float) -> jax.Array:
    """Conditional velocity ``u_t = d x_t / dt = a'(t) x1 + b'(t) x0`` (Lipman et al. 2023, eq. 13)."""
    _, _, da, db = path_coefficients(path, t, **kwargs)
    return _expand(da, x1) * x1 + _expand(db, x0) * x0
