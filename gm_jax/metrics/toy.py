"""Sample-based distances for low-dimensional (toy, 2-D) data: MMD with RBF kernels, sliced Wasserstein
distance and energy distance.

Pairwise quantities are computed from explicit differences x_i - y_j (O(N M d) memory), which is exact
and cheap for small d; for image features use :mod:`gm_jax.metrics.kid` or :mod:`gm_jax.metrics.prdc`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gm_jax.core.errors import require
from gm_jax.metrics.kid import mmd2_unbiased


def _check_pair(x: jax.Array, y: jax.Array, what: str, min_rows: int = 1) -> tuple[jax.Array, jax.Array]:
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    require(x.ndim == 2 and y.ndim == 2 and x.shape[1] == y.shape[1],
            f"{what} needs samples [N, d] and [M, d] of one dimension d (or 1-D arrays), got "
            f"{list(x.shape)} and {list(y.shape)}")
    require(min(x.shape[0], y.shape[0]) >= min_rows,
            f"{what} needs at least {min_rows} samples in each set, got {x.shape[0]} and {y.shape[0]}")
    return x, y


def _squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def _distances(a: jax.Array, b: jax.Array) -> jax.Array:
    sq = _squared_distances(a, b)
    # sqrt has an infinite derivative at 0; the double where keeps gradients finite on the diagonal.
    safe = jnp.where(sq > 0, sq, 1.0)
    return jnp.where(sq > 0, jnp.sqrt(safe), 0.0)


def rbf_kernel(x: jax.Array, y: jax.Array, bandwidths: jax.Array) -> jax.Array:
    """Sum of Gaussian kernels k(x, y) = sum_s exp(-||x - y||^2 / (2 s^2)) over ``bandwidths`` s
    (the kernel mixture of Li et al. 2015, generative moment matching networks);
    ``x`` [N, d], ``y`` [M, d] -> [N, M]."""
    sq = _squared_distances(x, y)
    s = jnp.atleast_1d(bandwidths)
    return jnp.sum(jnp.exp(-sq[..., None] / (2.0 * s**2)), axis=-1)


@jax.jit
def _rbf_mmd2(x: jax.Array, y: jax.Array, bandwidths: jax.Array) -> jax.Array:
    return mmd2_unbiased(rbf_kernel(x, x, bandwidths), rbf_kernel(y, y, bandwidths),
                         rbf_kernel(x, y, bandwidths))


def rbf_mmd2(x: jax.Array, y: jax.Array, bandwidths: jax.Array = (0.1, 0.5, 1.0, 2.0, 5.0)) -> jax.Array:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) between samples ``x`` [N, d] and ``y`` [M, d] with the
    sum of RBF kernels of :func:`rbf_kernel`. Zero in expectation when both come from one distribution
    (a single estimate can be slightly negative). ``bandwidths`` is an array: changing it does not
    recompile."""
    x, y = _check_pair(x, y, "rbf_mmd2", min_rows=2)
    s = jnp.atleast_1d(jnp.asarray(bandwidths, jnp.float32))
    require(s.ndim == 1 and bool(jnp.all(s > 0)), f"bandwidths must be positive numbers, got {bandwidths}")
    return _rbf_mmd2(x, y, s)


def wasserstein_1d(u: jax.Array, v: jax.Array, p: jax.Array = 1.0) -> jax.Array:
    """p-th power of the p-Wasserstein distance between two 1-D empirical measures with uniform weights,
    W_p^p = integral_0^1 |F_u^{-1}(t) - F_v^{-1}(t)|^p dt (the quantile coupling; Villani 2003, Topics in
    Optimal Transportation, ch. 2).

    The quantile functions are step functions, so the integral is an exact finite sum over the merged
    breakpoints {i/n} and {j/m}; for n = m it is mean_i |u_(i) - v_(i)|^p of the sorted samples.
    """
    n, m = u.shape[0], v.shape[0]
    us, vs = jnp.sort(u), jnp.sort(v)
    levels = jnp.sort(jnp.concatenate([jnp.arange(1, n + 1) / n, jnp.arange(1, m + 1) / m]))
    lower = jnp.concatenate([jnp.zeros(1), levels[:-1]])
    middle = 0.5 * (lower + levels)
    iu = jnp.clip(jnp.floor(middle * n).astype(jnp.int32), 0, n - 1)
    iv = jnp.clip(jnp.floor(middle * m).astype(jnp.int32), 0, m - 1)
    return jnp.sum((levels - lower) * jnp.abs(us[iu] - vs[iv]) ** p)


@jax.jit(static_argnames=("num_projections",))
def _sliced(x: jax.Array, y: jax.Array, key: jax.Array, p: jax.Array, num_projections: int) -> jax.Array:
    directions = jax.random.normal(key, (num_projections, x.shape[1]))
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    per_direction = jax.vmap(lambda theta: wasserstein_1d(x @ theta, y @ theta, p))(directions)
    return jnp.mean(per_direction) ** (1.0 / p)


def sliced_wasserstein(x: jax.Array, y: jax.Array, key: jax.Array, num_projections: int = 128,
                       p: jax.Array = 2.0) -> jax.Array:
    """Sliced p-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015):
    SW_p = (E_theta W_p^p(theta . x, theta . y))^{1/p}, theta uniform on the unit sphere, estimated with
    ``num_projections`` directions drawn from ``key``; each 1-D term is exact (:func:`wasserstein_1d`).
    ``p`` (>= 1) is an array: changing it does not recompile."""
    x, y = _check_pair(x, y, "sliced_wasserstein")
    require(num_projections >= 1, f"num_projections must be >= 1, got {num_projections}")
    require(float(p) >= 1.0, f"p must be >= 1, got {p}")
    return _sliced(x, y, key, jnp.asarray(p, jnp.float32), int(num_projections))


@jax.jit
def _energy(x: jax.Array, y: jax.Array) -> jax.Array:
    squared = (2.0 * jnp.mean(_distances(x, y)) - jnp.mean(_distances(x, x))
               - jnp.mean(_distances(y, y)))
    return jnp.sqrt(jnp.maximum(squared, 0.0))


def energy_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    """Energy distance (Székely & Rizzo 2013, as V-statistics):
    D = sqrt(2 E||X - Y|| - E||X - X'|| - E||Y - Y'||), each expectation the mean over all pairs of the
    samples (diagonals included). In 1-D it equals ``scipy.stats.energy_distance``."""
    x, y = _check_pair(x, y, "energy_distance")
    return _energy(x, y)
