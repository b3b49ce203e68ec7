"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel,
averaged over random subsets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import require


def polynomial_kernel(x: jax.Array, y: jax.Array) -> jax.Array:
    """Gram matrix of k(x, y) = (x . y / d + 1)^3 (the KID kernel of Bińkowski et al. 2018);
    ``x`` [N, d], ``y`` [M, d] -> [N, M]."""
    d = x.shape[-1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(k_xx: jax.Array, k_yy: jax.Array, k_xy: jax.Array) -> jax.Array:
    """Unbiased MMD^2 from Gram matrices (Gretton et al. 2012, eq. 3):

    1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j) - 2/(mn) sum_{i,j} k(x_i, y_j).
    """
    m, n = k_xx.shape[0], k_yy.shape[0]
    term_xx = (jnp.sum(k_xx) - jnp.trace(k_xx)) / (m * (m - 1))
    term_yy = (jnp.sum(k_yy) - jnp.trace(k_yy)) / (n * (n - 1))
    return term_xx + term_yy - 2.0 * jnp.mean(k_xy)


def polynomial_mmd2(x: jax.Array, y: jax.Array) -> jax.Array:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) between samples ``x`` [m, d] and ``y`` [n, d] with the
    KID kernel (x . y / d + 1)^3 (Bińkowski et al. 2018)."""
    return mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


@jax.jit(static_argnames=("num_subsets", "subset_size"))
def _subset_mmd2(x: jax.Array, y: jax.Array, key: jax.Array, num_subsets: int, subset_size: int) -> jax.Array:
    def one(k: jax.Array) -> jax.Array:
        kx, ky = jax.random.split(k)
        ix = jax.random.choice(kx, x.shape[0], (subset_size,), replace=False)
        iy = jax.random.choice(ky, y.shape[0], (subset_size,), replace=False)
        return polynomial_mmd2(x[ix], y[iy])

    return jax.lax.map(one, jax.random.split(key, num_subsets))


def kid(features_a: jax.Array, features_b: jax.Array, key: jax.Array, num_subsets: int = 100,
        subset_size: int = 1000) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD^2 of
    :func:`polynomial_mmd2` on ``num_subsets`` random subsets of ``subset_size`` rows of each feature set
    (drawn without replacement from ``key``).

    Returns ``(mean, std)`` over subsets; ``std`` is the spread of one subset's estimate (divide by
    sqrt(num_subsets) for the standard error of the mean). The mean can be slightly negative when the
    two distributions agree: the estimator is unbiased, not non-negative.
    """
    a, b = jnp.asarray(features_a, jnp.float32), jnp.asarray(features_b, jnp.float32)
    require(a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[1],
            f"KID needs feature sets [N, F] and [M, F] of one width, got {list(a.shape)} and {list(b.shape)}")
    require(num_subsets >= 1, f"num_subsets must be >= 1, got {num_subsets}")
    limit = min(a.shape[0], b.shape[0])
    require(2 <= subset_size <= limit,
            f"subset_size must be in [2, {limit}] (the smaller feature set), got {subset_size}; "
            "pass a smaller subset_size or more samples")
    values = np.asarray(_subset_mmd2(a, b, key, int(num_subsets), int(subset_size)), np.float64)
    return float(values.mean()), float(values.std())
