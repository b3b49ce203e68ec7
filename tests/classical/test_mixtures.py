import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.mixture import GaussianMixture

from gm_jax.classical import mixtures as mx
from gm_jax.core.errors import ConfigError

TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])
TRUE_MEANS = np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 4.0]])
TRUE_COVS = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.6, -0.2], [-0.2, 0.8]], [[1.5, 0.0], [0.0, 0.4]]])


def _gmm_data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    comp = rng.choice(3, size=n, p=TRUE_WEIGHTS)
    return np.stack([rng.multivariate_normal(TRUE_MEANS[k], TRUE_COVS[k]) for k in comp]).astype(np.float32)


def _expand_cov(cov: np.ndarray, covariance_type: str, d: int) -> np.ndarray:
    if covariance_type == "full":
        return cov
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def _fit(covariance_type: str, x: np.ndarray, iters: int, k: int = 3, seed: int = 0):
    em = mx.gaussian_mixture_em(k, covariance_type, 1e-6)
    params = em.init(jax.random.key(seed), jnp.asarray(x))
    init = params
    step = jax.jit(em.step)
    lls = []
    for _ in range(iters):
        params, m = step(params, jnp.asarray(x))
        lls.append(float(m["log_likelihood"]))
    return init, params, np.array(lls)


@pytest.mark.parametrize("covariance_type", mx.COVARIANCE_TYPES)
def test_em_log_likelihood_is_monotone_and_matches_sklearn(covariance_type):
    x = _gmm_data(300)
    init, params, lls = _fit(covariance_type, x, 15, k=4)
    assert np.all(np.diff(lls) >= -1e-5 * np.abs(lls[:-1])), lls
    assert lls[-1] > lls[0]
    # scikit-learn from the same initial parameters, the same number of EM iterations
    cov0 = np.asarray(init["covariances"], np.float64)
    weights0 = np.asarray(init["weights"], np.float64)
    prec0 = {"full": lambda c: np.linalg.inv(c), "diag": lambda c: 1.0 / c, "spherical": lambda c: 1.0 / c}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GaussianMixture(4, covariance_type=covariance_type, reg_covar=1e-6, max_iter=15, tol=0.0,
                              weights_init=weights0 / weights0.sum(),
                              means_init=np.asarray(init["means"], np.float64),
                              precisions_init=prec0[covariance_type](cov0)).fit(x.astype(np.float64))
    np.testing.assert_allclose(np.asarray(params["means"]), ref.means_, atol=2e-3)
    np.testing.assert_allclose(np.asarray(params["weights"]), ref.weights_, atol=1e-3)
    np.testing.assert_allclose(np.asarray(params["covariances"]), ref.covariances_, rtol=5e-3, atol=2e-3)
    np.testing.assert_allclose(float(np.mean(mx.gmm_log_density(params, x, covariance_type))),
                               ref.score(x.astype(np.float64)), rtol=1e-4)


def test_em_recovers_known_mixture_up_to_permutation():
    """EM converges to a local maximum: a k-means++ start with two centres in one cluster stays there. As
    with scikit-learn's n_init, the best of a few starts (by final log-likelihood) recovers the mixture."""
    x = _gmm_data(3000, seed=1)
    fits = [_fit("full", x, 40, seed=seed)[1:] for seed in (2, 3, 4)]
    params = max(fits, key=lambda f: f[1][-1])[0]
    means = np.asarray(params["means"])
    perm = min(itertools.permutations(range(3)), key=lambda p: np.abs(means[list(p)] - TRUE_MEANS).sum())
    perm = list(perm)
    np.testing.assert_allclose(means[perm], TRUE_MEANS, atol=0.12)
    np.testing.assert_allclose(np.asarray(params["weights"])[perm], TRUE_WEIGHTS, atol=0.03)
    np.testing.assert_allclose(np.asarray(params["covariances"])[perm], TRUE_COVS, atol=0.15)


@pytest.mark.parametrize("covariance_type", mx.COVARIANCE_TYPES)
def test_log_density_and_responsibilities_match_scipy(covariance_type):
    x = _gmm_data(50, seed=3)
    _, params, _ = _fit(covariance_type, x, 2, k=3)
    covs = _expand_cov(np.asarray(params["covariances"], np.float64), covariance_type, 2)
    triples = zip(np.asarray(params["weights"]), np.asarray(params["means"]), covs, strict=True)
    comp = np.stack([w * stats.multivariate_normal(m, c).pdf(x) for w, m, c in triples], axis=1)
    np.testing.assert_allclose(np.asarray(mx.gmm_log_density(params, x, covariance_type)),
                               np.log(comp.sum(1)), rtol=1e-5, atol=1e-5)
    resp = np.asarray(mx.gmm_responsibilities(params, x, covariance_type))
    np.testing.assert_allclose(resp.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(resp, comp / comp.sum(1, keepdims=True), atol=1e-5)
    joint = mx.mixture_joint_log_prob(params, mx.gaussian_component_log_prob(params, x, covariance_type))
    np.testing.assert_allclose(np.asarray(joint), np.log(comp), rtol=1e-5, atol=1e-4)


def test_mixture_joint_log_prob_adds_log_weights():
    params = {"weights": jnp.array([0.25, 0.75])}
    comp = jnp.array([[-1.0, -3.0], [0.5, -0.5]])
    np.testing.assert_allclose(np.asarray(mx.mixture_joint_log_prob(params, comp)),
                               np.log([0.25, 0.75])[None] + np.asarray(comp), rtol=1e-6)


def test_samples_follow_the_mixture():
    params = {"weights": jnp.asarray(TRUE_WEIGHTS, jnp.float32),
              "means": jnp.asarray(TRUE_MEANS, jnp.float32),
              "covariances": jnp.asarray(TRUE_COVS, jnp.float32)}
    x, comp = mx.gmm_sample(params, jax.random.key(4), 20000, "full")
    x, comp = np.asarray(x), np.asarray(comp)
    np.testing.assert_allclose(np.bincount(comp, minlength=3) / 20000, TRUE_WEIGHTS, atol=0.015)
    for k in range(3):
        np.testing.assert_allclose(np.cov(x[comp == k].T), TRUE_COVS[k], atol=0.1)
        np.testing.assert_allclose(x[comp == k].mean(0), TRUE_MEANS[k], atol=0.05)


def test_kmeans_plus_plus_picks_distinct_data_points():
    x = _gmm_data(100, seed=5)
    centers = np.asarray(mx.kmeans_plus_plus(jax.random.key(0), jnp.asarray(x), 5))
    dist = np.abs(centers[:, None, :] - x[None]).sum(-1)
    assert np.all(dist.min(1) < 1e-6)
    assert len({int(i) for i in dist.argmin(1)}) == 5


def _binary_data(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    protos = rng.random((3, 16)) < 0.5
    x = protos[rng.integers(0, 3, n)]
    return np.where(rng.random(x.shape) < 0.1, ~x, x).astype(np.float32)


def test_bernoulli_mixture_em_is_monotone_and_density_is_exact():
    x = _binary_data()
    em = mx.bernoulli_mixture_em(3, smoothing=1.0)
    params = em.init(jax.random.key(1), jnp.asarray(x))
    step = jax.jit(em.step)
    objectives = []
    for _ in range(10):
        params, m = step(params, jnp.asarray(x))
        objectives.append(float(m["objective"]))
    assert np.all(np.diff(objectives) >= -1e-5), objectives
    p = np.asarray(params["probs"], np.float64)
    assert np.all((p > 0) & (p < 1))
    comp = np.stack([w * np.prod(np.where(x == 1, pk, 1 - pk), axis=1)
                     for w, pk in zip(np.asarray(params["weights"]), p, strict=True)], axis=1)
    np.testing.assert_allclose(np.asarray(mx.bernoulli_mixture_log_density(params, x)), np.log(comp.sum(1)),
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(mx.bernoulli_mixture_responsibilities(params, x)).sum(1), 1.0,
                               atol=1e-6)
    samples, _ = mx.bernoulli_mixture_sample(params, jax.random.key(2), 20000)
    expected = np.asarray(params["weights"]) @ p
    np.testing.assert_allclose(np.asarray(samples).mean(0), expected, atol=0.02)


def test_bad_input_raises_config_error():
    x = jnp.asarray(_gmm_data(5))
    with pytest.raises(ConfigError, match="num_components"):
        mx.gaussian_mixture_em(6, "full").init(jax.random.key(0), x)
    with pytest.raises(ConfigError, match="covariance_type"):
        mx.gaussian_mixture_em(2, "tied")
    with pytest.raises(ConfigError, match="reg_covar"):
        mx.gaussian_mixture_em(2, "diag", reg_covar=0.0)
    with pytest.raises(ConfigError, match="binary"):
        mx.bernoulli_mixture_em(2).init(jax.random.key(0), jnp.asarray([[0.0, 0.5], [1.0, 1.0]]))


def test_singular_covariance_is_regularized_not_nan():
    """A constant coordinate makes every sample covariance singular; ``reg_covar`` (documented in
    ``gmm_m_step``) keeps it positive definite, so the log-likelihood stays finite and matches scipy."""
    x = _gmm_data(200)
    x = np.concatenate([x, np.full((200, 1), 3.0, np.float32)], axis=1)
    em = mx.gaussian_mixture_em(2, "full", 1e-3)
    params = em.init(jax.random.key(0), jnp.asarray(x))
    params, m = em.step(params, jnp.asarray(x))
    assert np.isfinite(float(m["log_likelihood"]))
    assert np.all(np.linalg.eigvalsh(np.asarray(params["covariances"], np.float64)) >= 1e-3 - 1e-6)
    np.testing.assert_allclose(float(np.mean(mx.gmm_log_density(params, x, "full"))),
                               np.mean(np.log(sum(w * stats.multivariate_normal(mu, c).pdf(x) for w, mu, c in
                                                  zip(*(np.asarray(params[k], np.float64) for k in
                                                        ("weights", "means", "covariances")), strict=True)))),
                               rtol=1e-4)
    with pytest.raises(ConfigError, match="num_components"):
        mx.bernoulli_mixture_em(3).step({"weights": jnp.ones(3) / 3, "probs": jnp.full((3, 2), 0.5)},
                                        jnp.asarray([[0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ConfigError, match="binary"):
        mx.bernoulli_mixture_em(1).step({"weights": jnp.ones(1), "probs": jnp.full((1, 2), 0.5)},
                                        jnp.asarray([[0.0, 2.0], [1.0, 1.0]]))
