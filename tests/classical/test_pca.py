import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gm_jax.classical import pca
from gm_jax.core.errors import ConfigError


def _data(n: int = 400, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * np.linspace(2.0, 0.3, d)[None]
    return (rng.normal(size=(n, d)) @ mix.T + rng.normal(size=d)).astype(np.float32)


def test_pca_components_variances_and_reconstruction():
    x = _data()
    evals = np.sort(np.linalg.eigvalsh(np.cov(x.T.astype(np.float64))))[::-1]
    full = pca.pca_fit(jnp.asarray(x), 6)
    comps = np.asarray(full["components"])
    np.testing.assert_allclose(comps @ comps.T, np.eye(6), atol=1e-5)
    np.testing.assert_allclose(np.asarray(full["explained_variance"]), evals, rtol=1e-4)
    np.testing.assert_allclose(float(np.sum(full["explained_variance"])), np.trace(np.cov(x.T)), rtol=1e-5)
    np.testing.assert_allclose(float(np.sum(full["explained_variance_ratio"])), 1.0, rtol=1e-5)
    for q in (2, 4):
        fit = pca.pca_fit(jnp.asarray(x), q)
        rec = np.asarray(pca.pca_reconstruct(fit, pca.pca_project(fit, jnp.asarray(x))))
        err = np.sum((x - rec) ** 2) / (x.shape[0] - 1)
        np.testing.assert_allclose(err, evals[q:].sum(), rtol=1e-3)
        # each component is an eigenvector of the sample covariance
        c = np.asarray(fit["components"])
        np.testing.assert_allclose(c @ np.cov(x.T) @ c.T, np.diag(evals[:q]), rtol=1e-3, atol=1e-3)


def test_ppca_closed_form_and_log_likelihood():
    x = _data(seed=1)
    q = 2
    fit = pca.ppca_fit(jnp.asarray(x), q)
    s = np.cov(x.T.astype(np.float64), bias=True)
    evals, evecs = np.linalg.eigh(s)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    s2 = evals[q:].mean()
    np.testing.assert_allclose(float(fit["noise_variance"]), s2, rtol=1e-4)
    u = evecs[:, :q]
    c_expected = u @ np.diag(evals[:q]) @ u.T + s2 * (np.eye(6) - u @ u.T)
    np.testing.assert_allclose(np.asarray(pca.ppca_covariance(fit)), c_expected, rtol=1e-3, atol=1e-4)
    ll = np.asarray(pca.ppca_log_likelihood(fit, jnp.asarray(x)))
    ref = stats.multivariate_normal(np.asarray(fit["mean"]), np.asarray(pca.ppca_covariance(fit),
                                                                           np.float64)).logpdf(x)
    np.testing.assert_allclose(ll, ref, rtol=1e-5, atol=1e-4)
    # maximum likelihood: perturbing W or sigma^2 lowers the total log-likelihood
    total = ll.sum()
    for change in ({"noise_variance": fit["noise_variance"] * 1.05},
                   {"noise_variance": fit["noise_variance"] * 0.95},
                   {"weights": fit["weights"] * 1.05}, {"mean": fit["mean"] + 0.05}):
        assert float(jnp.sum(pca.ppca_log_likelihood({**fit, **change}, jnp.asarray(x)))) < total
    samples = np.asarray(pca.ppca_sample(fit, jax.random.key(0), 40000))
    np.testing.assert_allclose(np.cov(samples.T), c_expected, atol=0.08 * np.abs(c_expected).max())
    z = np.asarray(pca.ppca_posterior_mean(fit, jnp.asarray(x[:3])))
    w = np.asarray(fit["weights"], np.float64)
    m_mat = w.T @ w + s2 * np.eye(q)
    np.testing.assert_allclose(z, np.linalg.solve(m_mat, w.T @ (x[:3] - np.asarray(fit["mean"])).T).T,
                               rtol=1e-3, atol=1e-4)


def test_bad_input_raises_config_error():
    x = jnp.asarray(_data(20, 6))
    with pytest.raises(ConfigError):
        pca.pca_fit(x, 7)
    with pytest.raises(ConfigError):
        pca.ppca_fit(x, 6)
    with pytest.raises(ConfigError):
        pca.pca_fit(x[0], 1)
