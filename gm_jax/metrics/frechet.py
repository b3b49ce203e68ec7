"""Fréchet distance between Gaussians fitted to features, and FID (Heusel et al. 2017).

The O(d^3) linear algebra runs in float64 numpy on the host with symmetric eigendecompositions only, so
the result is always a real number: no complex square roots are taken and nothing is dropped.
"""

from __future__ import annotations

import warnings

import numpy as np

from gm_jax.core.errors import ConfigError, require


class FewSamplesWarning(UserWarning):
    """Fewer samples than feature dimensions + 1: the sample covariance is singular (FID is then strongly
    biased, though still finite and real)."""


def _psd_eigh(matrix: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a symmetric PSD matrix; round-off negatives are clipped to zero.

    Eigenvalues below ``-1e-6 * max|eigenvalue|`` mean the matrix is not a covariance: ConfigError.
    """
    sym = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(sym)
    scale = max(float(np.max(np.abs(values))), np.finfo(np.float64).tiny)
    require(values[0] >= -1e-6 * scale,
            f"{what} is not positive semi-definite (eigenvalue {values[0]:.3g}); pass a covariance matrix")
    return np.clip(values, 0.0, None), vectors


def _check_stats(mu: np.ndarray, cov: np.ndarray, which: str) -> None:
    require(mu.ndim == 1, f"mu{which} must be a vector [d], got shape {list(mu.shape)}")
    d = mu.shape[0]
    require(cov.shape == (d, d), f"cov{which} must have shape [{d}, {d}] to match mu{which}, "
            f"got {list(cov.shape)}")
    require(bool(np.all(np.isfinite(mu)) and np.all(np.isfinite(cov))),
            f"mu{which}/cov{which} contain NaN or inf; check the features they were computed from")


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

    d^2 = ||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1^{1/2} C2 C1^{1/2})^{1/2})
    (Dowson & Landau 1982; the FID of Heusel et al. 2017). Both square roots are taken from
    ``numpy.linalg.eigh`` of symmetric PSD matrices in float64, so the trace term is real by construction.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    _check_stats(mu1, cov1, "1")
    _check_stats(mu2, cov2, "2")
    require(mu1.shape == mu2.shape, f"mu1 and mu2 must have the same dimension, got {mu1.shape[0]} "
            f"and {mu2.shape[0]}")
    values1, vectors1 = _psd_eigh(cov1, "cov1")
    _psd_eigh(cov2, "cov2")
    sqrt_cov1 = (vectors1 * np.sqrt(values1)) @ vectors1.T
    inner_values, _ = _psd_eigh(sqrt_cov1 @ cov2 @ sqrt_cov1, "C1^1/2 C2 C1^1/2")
    trace_sqrt = float(np.sum(np.sqrt(inner_values)))
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)
    # Round-off can leave a tiny negative number when the two Gaussians coincide.
    return max(value, 0.0)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased sample covariance (divisor N - 1) of ``features`` [N, F], in float64.

    With N < F + 1 the covariance is singular; a :class:`FewSamplesWarning` names the minimum N.
    """
    x = np.asarray(features, np.float64)
    require(x.ndim == 2, f"features must have shape [N, F], got {list(x.shape)}; flatten them first")
    n, f = x.shape
    require(n >= 2, f"feature statistics need at least 2 samples, got {n}")
    require(bool(np.all(np.isfinite(x))), "features contain NaN or inf; check the feature extractor input")
    if n < f + 1:
        warnings.warn(f"{n} samples for {f} feature dimensions: the covariance is singular; use at least "
                      f"{f + 1} samples (ideally 10x more) for a meaningful Fréchet distance",
                      FewSamplesWarning, stacklevel=2)
    mu = x.mean(axis=0)
    centred = x - mu
    cov = centred.T @ centred / (n - 1)
    return mu, cov


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet Inception Distance (Heusel et al. 2017) between two feature sets [N, F] and [M, F]:
    :func:`frechet_distance` of their Gaussian fits (:func:`feature_statistics`)."""
    a, b = np.asarray(features_a), np.asarray(features_b)
    if a.ndim == 2 and b.ndim == 2 and a.shape[1] != b.shape[1]:
        raise ConfigError(f"feature sets have different widths {a.shape[1]} and {b.shape[1]}; "
                          "compute both with the same feature extractor")
    mu_a, cov_a = feature_statistics(a)
    mu_b, cov_b = feature_statistics(b)
    return frechet_distance(mu_a, cov_a, mu_b, cov_b)
