"""Sliced 2-Wasserstein distance from samples to a Gaussian mixture itself (not to a second sample).

Two-sample estimates SW(x, y) carry the sampling noise of both sets; here the second argument is the
true law. Projected on a unit direction θ, the mixture Σ_k π_k N(μ_k, Σ_k) is the 1-D mixture
Σ_k π_k N(θ·μ_k, θᵀΣ_kθ) with CDF F. In 1-D the optimal coupling is monotone (e.g. Villani 2003, Thm. 2.18),
so between the empirical law of sorted x_(1) ≤ … ≤ x_(n) and F

    W2² = Σ_i ∫_{(i−1)/n}^{i/n} (x_(i) − F⁻¹(u))² du = Σ_i E[(X − x_(i))²; q_{i−1} < X ≤ q_i],   q_i = F⁻¹(i/n),

and each term is closed-form per component (the q_i by interpolation + Newton on F): with
X = m + sZ, a = (q_{i−1} − m)/s, b = (q_i − m)/s, d = m − x_(i),
E[(X − x)²; ·] = d² (Φ(b) − Φ(a)) + 2 d s (φ(a) − φ(b)) + s² (Φ(b) − Φ(a) + a φ(a) − b φ(b)).
The sliced distance averages W2² over fixed directions θ_j = (cos πj/P, sin πj/P) in 2-D (a deterministic
quadrature of the uniform direction law; Rabin et al. 2011's SW2) or over given directions, so every sampler
is measured along the same projections. Computed in float64 on the host (numpy/scipy).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from gm_jax.core.errors import require


def uniform_directions(num: int, dim: int = 2, seed: int = 0) -> np.ndarray:
    """``num`` unit directions [num, dim]: equally spaced half-circle angles πj/num in 2-D, Gaussian
    draws normalized (fixed ``seed``) in higher dimension."""
    require(num >= 1, f"number of projections must be >= 1, got {num}")
    if dim == 2:
        ang = np.pi * np.arange(num) / num
        return np.stack([np.cos(ang), np.sin(ang)], axis=1)
    v = np.random.default_rng(seed).standard_normal((num, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _phi(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def mixture_cdf_pdf_1d(weights: np.ndarray, means: np.ndarray, stds: np.ndarray, x: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """F(x) = Σ_k π_k Φ((x − m_k)/s_k) and its density for rows of 1-D mixtures: ``means``, ``stds`` [P, K],
    ``x`` [P, M] → ([P, M], [P, M])."""
    z = (x[..., None] - means[:, None, :]) / stds[:, None, :]
    cdf = np.einsum("k,pmk->pm", weights, ndtr(z))
    pdf = np.einsum("k,pmk->pm", weights, _phi(z) / stds[:, None, :])
    return cdf, pdf


def mixture_quantiles_1d(weights: np.ndarray, means: np.ndarray, stds: np.ndarray, probs: np.ndarray,
                         grid: int = 4097, newton: int = 4) -> np.ndarray:
    """F⁻¹(p) of 1-D mixtures: ``weights`` [K]; ``means``, ``stds`` [P, K] (one mixture per row); ``probs``
    [M] in (0, 1) → quantiles [P, M]. Linear interpolation of F tabulated on ``grid`` points over
    [min m − 12 s, max m + 12 s], then ``newton`` Newton steps q ← q − (F(q) − p)/f(q) kept inside the bracket
    of the tabulated interval (quadratic convergence from a close start)."""
    probs = np.asarray(probs, np.float64)
    lo = (means - 12 * stds).min(1)
    hi = (means + 12 * stds).max(1)
    xs = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, grid)[None]
    cdf, _ = mixture_cdf_pdf_1d(weights, means, stds, xs)
    q = np.stack([np.interp(probs, cdf[j], xs[j]) for j in range(len(xs))])
    for _ in range(newton):
        f, dens = mixture_cdf_pdf_1d(weights, means, stds, q)
        q = np.clip(q - (f - probs[None]) / np.maximum(dens, 1e-300), lo[:, None], hi[:, None])
    return q


def projected_w2_squared(x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray,
                         directions: np.ndarray) -> np.ndarray:
    """W2²(empirical law of x, θ_j-projection of the mixture) for every direction: [P] (module docstring)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    weights, means, covs = (np.asarray(a, np.float64) for a in (weights, means, covs))
    dirs = np.asarray(directions, np.float64)
    require(x.shape[1] == means.shape[1] == dirs.shape[1],
            f"samples, mixture and directions must share one dimension, got {x.shape[1]}, {means.shape[1]}, "
            f"{dirs.shape[1]}")
    n = x.shape[0]
    proj = np.sort(x @ dirs.T, axis=0).T  # [P, n]
    m = dirs @ means.T  # [P, K]
    s = np.sqrt(np.einsum("pd,kde,pe->pk", dirs, covs, dirs))  # [P, K]
    q = mixture_quantiles_1d(weights, m, s, np.arange(1, n) / n)  # [P, n-1]
    edges = np.concatenate([np.full((len(dirs), 1), -np.inf), q, np.full((len(dirs), 1), np.inf)], axis=1)
    a = (edges[:, :-1, None] - m[:, None, :]) / s[:, None, :]  # [P, n, K]
    b = (edges[:, 1:, None] - m[:, None, :]) / s[:, None, :]
    mass = ndtr(b) - ndtr(a)
    pa, pb = _phi(a), _phi(b)
    with np.errstate(invalid="ignore"):  # ±inf × 0 at the outer edges, replaced by the limit 0
        apa = np.where(np.isfinite(a), a * pa, 0.0)
        bpb = np.where(np.isfinite(b), b * pb, 0.0)
    d = m[:, None, :] - proj[..., None]
    sk = s[:, None, :]
    terms = d * d * mass + 2 * d * sk * (pa - pb) + sk * sk * (mass + apa - bpb)
    return np.einsum("k,pnk->p", weights, terms)


def sliced_w2_to_mixture(x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray,
                         directions: np.ndarray, chunk: int = 8) -> float:
    """SW2 = (mean_j W2²(θ_j·x, θ_j·mixture))^{1/2} over ``directions`` (processed ``chunk`` at a time to
    bound memory: O(chunk × n × K))."""
    require(len(x) >= 2, f"need at least 2 samples, got {len(x)}")
    parts = [projected_w2_squared(x, weights, means, covs, directions[i:i + chunk])
             for i in range(0, len(directions), chunk)]
    return float(np.sqrt(np.mean(np.concatenate(parts))))
