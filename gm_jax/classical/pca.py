"""Principal component analysis by SVD (Pearson 1901; Hotelling 1933) and probabilistic PCA with its
closed-form maximum-likelihood solution (Tipping & Bishop 1999).

Data are ``[N, D]``. PCA variances use the unbiased ``1/(N-1)`` sample covariance (as scikit-learn); PPCA
is a likelihood model and uses the maximum-likelihood ``1/N`` covariance.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from gm_jax.core.errors import require

Params = dict[str, jax.Array]


def _check(x: jax.Array, num_components: int, strict: bool) -> None:
    require(x.ndim == 2, f"PCA data must be [N, D], got shape {x.shape}; flatten each example first")
    top = min(x.shape[0], x.shape[1]) - (1 if strict else 0)
    require(1 <= num_components <= top, f"num_components={num_components} must be in [1, {top}] for data of "
            f"shape {x.shape}")


def _sign_fix(components: jax.Array) -> jax.Array:
    """Flip each row so its largest-magnitude entry is positive (a deterministic sign convention)."""
    idx = jnp.argmax(jnp.abs(components), axis=1)
    signs = jnp.sign(components[jnp.arange(components.shape[0]), idx])
    return components * jnp.where(signs == 0, 1.0, signs)[:, None]


@functools.partial(jax.jit, static_argnames=('num_components',))
def pca_fit(x: jax.Array, num_components: int) -> Params:
    """PCA by the thin SVD of the centred data ``X - mean = U S V^T``: components are the first rows of
    ``V^T`` (orthonormal), explained variances ``S^2 / (N - 1)`` are the eigenvalues of the sample
    covariance (Jolliffe 2002, sec. 3.5). Returns ``mean [D]``, ``components [q, D]``,
    ``explained_variance [q]``, ``explained_variance_ratio [q]`` and ``total_variance`` (trace of the
    sample covariance)."""
    x = jnp.asarray(x, jnp.float32)
    _check(x, num_components, strict=False)
    require(x.shape[0] >= 2, f"PCA needs at least 2 data points, got {x.shape[0]}")
    mean = jnp.mean(x, axis=0)
    _, s, vt = jnp.linalg.svd(x - mean, full_matrices=False)
    var = s ** 2 / (x.shape[0] - 1)
    total = jnp.sum(var)
    q = num_components
    return {"mean": mean, "components": _sign_fix(vt[:q]), "explained_variance": var[:q],
            "explained_variance_ratio": var[:q] / total, "total_variance": total}


@jax.jit
def pca_project(pca: Params, x: jax.Array) -> jax.Array:
    """Principal-component scores ``z = (x - mean) V_q``, ``[N, q]``."""
    return (jnp.asarray(x, jnp.float32) - pca["mean"]) @ pca["components"].T


@jax.jit
def pca_reconstruct(pca: Params, z: jax.Array) -> jax.Array:
    """Reconstruction ``x_hat = mean + z V_q^T`` from scores ``z [N, q]``; the summed squared error over the
    data divided by ``N - 1`` equals the sum of the discarded eigenvalues (Jolliffe 2002, sec. 3.5)."""
    return pca["mean"] + z @ pca["components"]


@functools.partial(jax.jit, static_argnames=('num_latent',))
def ppca_fit(x: jax.Array, num_latent: int) -> Params:
    """Closed-form ML probabilistic PCA (Tipping & Bishop 1999, eqs. 7-8): with the eigen-decomposition of
    the ML covariance ``S = (1/N) sum (x - mean)(x - mean)^T``, ``sigma^2 = mean of the D - q discarded
    eigenvalues`` and ``W = U_q (L_q - sigma^2 I)^{1/2}`` (rotation ``R = I``). Returns ``mean [D]``,
    ``weights [D, q]`` and ``noise_variance``."""
    x = jnp.asarray(x, jnp.float32)
    _check(x, num_latent, strict=True)
    require(x.shape[0] > x.shape[1], f"PPCA here needs more points than dimensions (N > D) for a full-rank "
            f"ML covariance, got shape {x.shape}")
    n = x.shape[0]
    mean = jnp.mean(x, axis=0)
    xc = x - mean
    evals, evecs = jnp.linalg.eigh(xc.T @ xc / n)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    q = num_latent
    s2 = jnp.mean(evals[q:])
    w = evecs[:, :q] * jnp.sqrt(jnp.maximum(evals[:q] - s2, 0.0))[None]
    return {"mean": mean, "weights": _sign_fix(w.T).T, "noise_variance": s2}


@jax.jit
def ppca_covariance(ppca: Params) -> jax.Array:
    """Model covariance ``C = W W^T + sigma^2 I`` (Tipping & Bishop 1999, eq. 4)."""
    w = ppca["weights"]
    return w @ w.T + ppca["noise_variance"] * jnp.eye(w.shape[0])


@jax.jit
def ppca_log_likelihood(ppca: Params, x: jax.Array) -> jax.Array:
    """``log N(x | mean, C)`` with ``C = W W^T + sigma^2 I`` (Tipping & Bishop 1999, eq. 5), ``[N]``."""
    x = jnp.asarray(x, jnp.float32)
    chol = jnp.linalg.cholesky(ppca_covariance(ppca))
    sol = jax.scipy.linalg.solve_triangular(chol, (x - ppca["mean"]).T, lower=True)
    d = x.shape[-1]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * (d * math.log(2.0 * math.pi) + log_det + jnp.sum(sol ** 2, axis=0))


@jax.jit
def ppca_posterior_mean(ppca: Params, x: jax.Array) -> jax.Array:
    """``E[z | x] = M^{-1} W^T (x - mean)`` with ``M = W^T W + sigma^2 I`` (Tipping & Bishop 1999, eq. 6)."""
    w = ppca["weights"]
    m = w.T @ w + ppca["noise_variance"] * jnp.eye(w.shape[1])
    return jnp.linalg.solve(m, w.T @ (jnp.asarray(x, jnp.float32) - ppca["mean"]).T).T


@functools.partial(jax.jit, static_argnames=('num',))
def ppca_sample(ppca: Params, key: jax.Array, num: int) -> jax.Array:
    """Samples of the generative model ``x = W z + mean + eps``, ``z ~ N(0, I_q)``,
    ``eps ~ N(0, sigma^2 I)`` (Tipping & Bishop 1999, eq. 2), ``[num, D]``."""
    kz, ke = jax.random.split(key)
    w = ppca["weights"]
    z = jax.random.normal(kz, (num, w.shape[1]))
    eps = jnp.sqrt(ppca["noise_variance"]) * jax.random.normal(ke, (num, w.shape[0]))
    return z @ w.T + ppca["mean"] + eps
