"""PRDC: limits for identical and far-apart sets, and an independent sklearn k-NN reference."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from gm_jax.core.errors import ConfigError
from gm_jax.metrics.prdc import prdc


def reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """The four definitions evaluated with sklearn's exact k-NN search in float64."""
    def radii(x):
        dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
        return dist[:, k]  # column 0 is the point itself

    r_real, r_fake = radii(real), radii(fake)
    dist = np.linalg.norm(real[:, None, :] - fake[None, :, :], axis=-1)  # [N, M]
    return {
        "precision": np.mean(np.any(dist <= r_real[:, None], axis=0)),
        "recall": np.mean(np.any(dist <= r_fake[None, :], axis=1)),
        "density": np.sum(dist <= r_real[:, None]) / (k * len(fake)),
        "coverage": np.mean(dist.min(axis=1) <= r_real),
    }


@pytest.mark.parametrize("k", [1, 3, 5])
def test_identical_sets(k):
    x = np.random.default_rng(k).normal(size=(150, 8))
    result = prdc(x, x, k=k)
    assert result["precision"] == 1.0 and result["recall"] == 1.0 and result["coverage"] == 1.0
    # Each point lies in its own ball and in those of its k nearest neighbours.
    assert result["density"] == pytest.approx((k + 1) / k, abs=1e-6)


def test_far_apart_sets_score_zero():
    x = np.random.default_rng(0).normal(size=(100, 8))
    result = prdc(x, x + 1000.0, k=5)
    assert all(value == 0.0 for value in result.values()), result


def test_matches_sklearn_reference():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(300, 10))
    fake = np.concatenate([rng.normal(0.3, 0.7, size=(150, 10)), rng.normal(2.0, 1.0, size=(100, 10))])
    result = prdc(real, fake, k=5)
    expected = reference_prdc(real, fake, k=5)
    for name in expected:
        # One borderline pair may round differently in float32: allow one count.
        assert result[name] == pytest.approx(expected[name], abs=1.0 / 250 + 1e-6), name
    assert 0.0 < result["precision"] < 1.0 and 0.0 < result["coverage"] < 1.0


def test_bad_k_raises_config_error():
    x = np.zeros((5, 2))
    with pytest.raises(ConfigError, match="k must be"):
        prdc(x, x, k=5)
