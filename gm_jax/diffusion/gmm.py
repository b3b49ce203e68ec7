"""Exact test bed: a Gaussian mixture whose noised marginals are again Gaussian mixtures.

If x_0 ~ Σ_k π_k N(μ_k, Σ_k) and x_t = α x_0 + σ ε, then x_t ~ Σ_k π_k N(α μ_k, α² Σ_k + σ² I), so the
score, ε- and x_0-predictions at every noise level are available in closed form (Tweedie's formula
E[x_0 | x_t] = (x_t + σ² ∇log p_t(x_t)) / α, Efron 2011, eq. 2.8).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gm_jax.core.errors import require


class GaussianMixture(struct.PyTreeNode):
    """weights [K] (sum to one), means [K, D], covs [K, D, D] (symmetric positive definite)."""

    weights: jax.Array
    means: jax.Array
    covs: jax.Array

    @property
    def dim(self) -> int:
        return self.means.shape[1]


def gaussian_mixture(weights: jax.Array, means: jax.Array, covs: jax.Array) -> GaussianMixture:
    """Checked constructor (host side)."""
    weights, means, covs = (jnp.asarray(a, jnp.float32) for a in (weights, means, covs))
    k, d = means.shape
    require(weights.shape == (k,), f"weights must have shape ({k},), got {weights.shape}")
    require(covs.shape == (k, d, d), f"covs must have shape ({k}, {d}, {d}), got {covs.shape}")
    require(bool(jnp.all(weights >= 0)) and abs(float(weights.sum()) - 1) < 1e-5, "weights must be >= 0 and sum to 1")
    return GaussianMixture(weights / weights.sum(), means, covs)


def noised(gmm: GaussianMixture, alpha: jax.Array, sigma: jax.Array) -> GaussianMixture:
    """The law of α x_0 + σ ε: weights π_k, means α μ_k, covariances α² Σ_k + σ² I."""
    eye = jnp.eye(gmm.dim, dtype=gmm.covs.dtype)
    return GaussianMixture(gmm.weights, alpha * gmm.means, alpha**2 * gmm.covs + sigma**2 * eye)


def _component_terms(gmm: GaussianMixture, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """log π_k N(x; μ_k, Σ_k) [B, K] and Σ_k^{-1}(x − μ_k) [B, K, D], through the eigendecomposition
    Σ_k = U_k diag(λ_k) U_kᵀ (cheap to compile, and the noised covariances share U_k)."""
    lam, u = jnp.linalg.eigh(gmm.covs)  # [K, D], [K, D, D]
    return _eigen_terms(gmm.weights, gmm.means, lam, u, x)


def _eigen_terms(weights: jax.Array, means: jax.Array, lam: jax.Array, u: jax.Array, x: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """:func:`_component_terms` of the mixture with covariances U_k diag(λ_k) U_kᵀ."""
    diff = x[:, None, :] - means[None]  # [B, K, D]
    proj = jnp.einsum("kde,bkd->bke", u, diff)  # coordinates in the eigenbasis
    sol = jnp.einsum("kde,bke->bkd", u, proj / lam[None])
    maha = jnp.sum(proj**2 / lam[None], -1)
    logdet = jnp.sum(jnp.log(lam), -1)
    logp = -0.5 * (maha + logdet[None] + means.shape[1] * jnp.log(2 * jnp.pi)) + jnp.log(weights)[None]
    return logp, sol


def log_prob(gmm: GaussianMixture, x: jax.Array) -> jax.Array:
    """log Σ_k π_k N(x; μ_k, Σ_k) for x [B, D]."""
    logp, _ = _component_terms(gmm, x)
    return jax.nn.logsumexp(logp, axis=-1)


def score(gmm: GaussianMixture, x: jax.Array) -> jax.Array:
    """∇_x log p(x) = −Σ_k r_k(x) Σ_k^{-1}(x − μ_k), r_k the responsibilities."""
    logp, sol = _component_terms(gmm, x)
    resp = jax.nn.softmax(logp, axis=-1)
    return -jnp.sum(resp[..., None] * sol, axis=1)


def noised_score(gmm: GaussianMixture, x: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """Exact score ∇ log p_t(x) of the noised mixture at level (α, σ)."""
    return score(noised(gmm, alpha, sigma), x)


def x0_prediction(gmm: GaussianMixture, x: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """E[x_0 | x_t = x] = (x + σ² ∇log p_t(x)) / α (Tweedie's formula)."""
    return (x + sigma**2 * noised_score(gmm, x, alpha, sigma)) / alpha


def eps_prediction(gmm: GaussianMixture, x: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """E[ε | x_t = x] = −σ ∇log p_t(x) (Vincent 2011; Ho et al. 2020, eq. 11 ↔ score)."""
    return -sigma * noised_score(gmm, x, alpha, sigma)


def exact_denoiser(gmm: GaussianMixture):
    """The sampler-facing denoiser ``(x, t, alpha, sigma) -> E[x_0 | x_t]`` of this mixture; ``x`` may
    have any trailing shape whose size is D. The covariances are diagonalized once, here (in float64 on the
    host when the mixture is concrete): the noised ones, α² Σ_k + σ² I = U_k diag(α² λ_k + σ²) U_kᵀ, share
    U_k, so a call is two batched products and no eigendecomposition (a LAPACK call inside a sampler's
    nested loops left XLA:CPU waiting forever, jax 0.10.2)."""
    try:
        lam64, u64 = np.linalg.eigh(np.asarray(gmm.covs, np.float64))
        lam, u = jnp.asarray(lam64, jnp.float32), jnp.asarray(u64, jnp.float32)
    except jax.errors.TracerArrayConversionError:  # a traced mixture: once, outside the sampler's loop
        lam, u = jnp.linalg.eigh(gmm.covs)

    def denoiser(x: jax.Array, t: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
        del t
        flat = x.reshape(x.shape[0], -1)
        logp, sol = _eigen_terms(gmm.weights, alpha * gmm.means, alpha**2 * lam + sigma**2, u, flat)
        score = -jnp.sum(jax.nn.softmax(logp, axis=-1)[..., None] * sol, axis=1)
        return ((flat + sigma**2 * score) / alpha).reshape(x.shape)  # Tweedie's formula

    return denoiser


def sample(gmm: GaussianMixture, key: jax.Array, num: int) -> jax.Array:
    """``num`` i.i.d. draws: component k ~ Cat(π), then μ_k + L_k z."""
    kc, kz = jax.random.split(key)
    comp = jax.random.categorical(kc, jnp.log(gmm.weights), shape=(num,))
    z = jax.random.normal(kz, (num, gmm.dim))
    chol = jnp.linalg.cholesky(gmm.covs)[comp]
    return gmm.means[comp] + jnp.einsum("bij,bj->bi", chol, z)


# ----------------------------------------------------------------------------------------------------------
# Exact posteriors of linear inverse problems y = A x + σ_y ε under the mixture prior
# ----------------------------------------------------------------------------------------------------------


def _pseudo_inverse_psd(s: jax.Array, rtol: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """S⁺, log pdet(S) and rank of symmetric PSD matrices S [K, m, m] via S = W diag(λ) Wᵀ, eigenvalues
    below ``rtol`` × the largest treated as zero (Rao 1973, Sec. 8a.4: the degenerate Gaussian on range(S))."""
    lam, w = jnp.linalg.eigh(s)
    keep = lam > rtol * jnp.max(lam, axis=-1, keepdims=True)
    inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
    s_pinv = jnp.einsum("kij,kj,klj->kil", w, inv, w)
    logdet = jnp.sum(jnp.where(keep, jnp.log(jnp.where(keep, lam, 1.0)), 0.0), -1)
    return s_pinv, logdet, jnp.sum(keep, -1)


def posterior(gmm: GaussianMixture, A: jax.Array, y: jax.Array, sigma_y: jax.Array | float,
              rtol: float = 1e-6) -> GaussianMixture:
    """The exact posterior p(x | y) ∝ p(x) N(y; A x, σ_y² I) of the mixture prior and a dense A [m, D]: again
    a Gaussian mixture (Bishop 2006, eqs. 2.113–2.117 per component; Murphy 2012, Sec. 4.4.1) with
    S_k = A Σ_k Aᵀ + σ_y² I, gain K_k = Σ_k Aᵀ S_k⁻¹ and
        weights ∝ π_k N(y; A μ_k, S_k),  means μ_k + K_k (y − A μ_k),  covs Σ_k − K_k A Σ_k.
    S_k⁻¹ is the pseudo-inverse with eigenvalues below ``rtol`` × the largest dropped (and the evidence the
    degenerate Gaussian on range(S_k), with the pseudo-determinant), so σ_y = 0 works for any A, also one
    with zero rows (a mask as diag(m)); for noiseless data the covariances are then singular (zero variance
    along the observed directions). ``y`` is one measurement [m]."""
    a = jnp.asarray(A, gmm.means.dtype)
    y = jnp.asarray(y, gmm.means.dtype).reshape(-1)
    require(a.ndim == 2 and a.shape[1] == gmm.dim, f"A must have shape [m, {gmm.dim}], got {a.shape}")
    require(y.shape == (a.shape[0],), f"y must have shape ({a.shape[0]},), got {y.shape}")
    a_sig = jnp.einsum("ij,kjl->kil", a, gmm.covs)  # A Σ_k [K, m, D]
    s = jnp.einsum("kil,jl->kij", a_sig, a) + sigma_y**2 * jnp.eye(a.shape[0], dtype=a.dtype)
    s = 0.5 * (s + jnp.swapaxes(s, -1, -2))
    s_pinv, logdet, rank = _pseudo_inverse_psd(s, rtol)
    resid = y[None] - gmm.means @ a.T  # [K, m]
    sol = jnp.einsum("kij,kj->ki", s_pinv, resid)
    maha = jnp.sum(resid * sol, -1)
    logw = jnp.log(gmm.weights) - 0.5 * (maha + logdet + rank * jnp.log(2 * jnp.pi))
    means = gmm.means + jnp.einsum("kil,ki->kl", a_sig, sol)
    covs = gmm.covs - jnp.einsum("kil,kij,kjn->kln", a_sig, s_pinv, a_sig)
    return GaussianMixture(jax.nn.softmax(logw), means, 0.5 * (covs + jnp.swapaxes(covs, -1, -2)))


def posterior_sample(gmm: GaussianMixture, A: jax.Array, y: jax.Array, sigma_y: jax.Array | float,
                     key: jax.Array, num: int, jitter: float = 1e-6) -> jax.Array:
    """``num`` exact draws of :func:`posterior` with :func:`sample`; ``jitter`` × I is added to the
    covariances so that the Cholesky factor of a singular (noiseless) posterior exists (std √jitter)."""
    post = posterior(gmm, A, y, sigma_y)
    eye = jnp.eye(gmm.dim, dtype=post.covs.dtype)
    return sample(GaussianMixture(post.weights, post.means, post.covs + jitter * eye), key, num)


def moments(gmm: GaussianMixture) -> tuple[jax.Array, jax.Array]:
    """Mean Σ π_k μ_k and covariance Σ π_k (Σ_k + μ_k μ_kᵀ) − μ μᵀ of the mixture (law of total covariance)."""
    mean = gmm.weights @ gmm.means
    second = jnp.einsum("k,kij->ij", gmm.weights, gmm.covs + jnp.einsum("ki,kj->kij", gmm.means, gmm.means))
    return mean, second - jnp.outer(mean, mean)
