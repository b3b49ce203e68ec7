"""The GAN value function on densities known in closed form (Goodfellow et al. 2014, Sec. 4).

For a fixed generator the best discriminator is ``D*(x) = p_data(x) / (p_data(x) + p_g(x))``
(Proposition 1) and the virtual training criterion ``C(G) = max_D V(G, D)`` equals
``-log 4 + 2 JSD(p_data || p_g)`` (Theorem 1). These functions evaluate both sides by quadrature on a 1-D
grid so the identity can be checked numerically.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gaussian_density(x: jax.Array, mean: float | jax.Array, std: float | jax.Array) -> jax.Array:
    """Normal density ``N(x; mean, std^2) = exp(-(x - mean)^2 / (2 std^2)) / (std sqrt(2 pi))``."""
    z = (x - mean) / std
    return jnp.exp(-0.5 * z ** 2) / (std * jnp.sqrt(2.0 * jnp.pi))


def optimal_discriminator(p_data: jax.Array, p_g: jax.Array) -> jax.Array:
    """``D*(x) = p_data(x) / (p_data(x) + p_g(x))`` (Goodfellow et al. 2014, Proposition 1, eq. 2);
    0.5 where both densities vanish."""
    total = p_data + p_g
    return jnp.where(total > 0, p_data / jnp.where(total > 0, total, 1.0), 0.5)


def trapezoid(values: jax.Array, grid: jax.Array) -> jax.Array:
    """Trapezoidal rule ``sum_i (x_{i+1} - x_i) (f_i + f_{i+1}) / 2`` on a 1-D grid."""
    return jnp.sum(jnp.diff(grid) * 0.5 * (values[1:] + values[:-1]))


def _xlogy(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x log y`` with ``0 log 0 = 0``."""
    return jnp.where(x > 0, x * jnp.log(jnp.where(x > 0, y, 1.0)), 0.0)


def value_function(grid: jax.Array, p_data: jax.Array, p_g: jax.Array, d: jax.Array) -> jax.Array:
    """``V(G, D) = int p_data log D + p_g log(1 - D) dx`` (Goodfellow et al. 2014, eq. 1 / eq. 3) by
    quadrature, with densities and discriminator values given on ``grid``."""
    return trapezoid(_xlogy(p_data, d) + _xlogy(p_g, 1.0 - d), grid)


def virtual_training_criterion(grid: jax.Array, p_data: jax.Array, p_g: jax.Array) -> jax.Array:
    """``C(G) = max_D V(G, D) = V(G, D*)`` (Goodfellow et al. 2014, eq. 4) by quadrature, with
    ``1 - D* = p_g / (p_data + p_g)`` formed directly so that it does not round to 0 where ``p_g << p_data``."""
    total = p_data + p_g
    safe = jnp.where(total > 0, total, 1.0)
    return trapezoid(_xlogy(p_data, p_data / safe) + _xlogy(p_g, p_g / safe), grid)


def kl_divergence(grid: jax.Array, p: jax.Array, q: jax.Array) -> jax.Array:
    """``KL(p || q) = int p log(p / q) dx`` by quadrature (``0 log 0 = 0``)."""
    return trapezoid(_xlogy(p, p) - _xlogy(p, q), grid)


def jensen_shannon_divergence(grid: jax.Array, p: jax.Array, q: jax.Array) -> jax.Array:
    """``JSD(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m)`` with ``m = (p + q) / 2`` (nats; Goodfellow et al.
    2014, eq. 6), by quadrature."""
    m = 0.5 * (p + q)
    safe_m = jnp.where(m > 0, m, 1.0)
    # p <= 2 m, so a term whose m underflowed to 0 in float32 contributes 0 (not -inf).
    terms = 0.5 * (_xlogy(p, p / safe_m) + _xlogy(q, q / safe_m))
    return trapezoid(jnp.where(m > 0, terms, 0.0), grid)


def criterion_from_jsd(grid: jax.Array, p_data: jax.Array, p_g: jax.Array) -> jax.Array:
    """Right-hand side of Theorem 1 (Goodfellow et al. 2014, eq. 6): ``-log 4 + 2 JSD(p_data || p_g)``."""
    return -jnp.log(4.0) + 2.0 * jensen_shannon_divergence(grid, p_data, p_g)
