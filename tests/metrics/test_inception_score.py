"""Inception Score: its two limits and an independent scipy computation."""

import numpy as np
import pytest
import scipy.stats

from gm_jax.core.errors import ConfigError
from gm_jax.metrics.inception_score import inception_score


def test_confident_uniform_predictions_give_num_classes():
    k, splits = 7, 4
    labels = np.arange(k * 5 * splits) % k  # every split holds each class equally often
    probs = np.eye(k)[labels]
    mean, std = inception_score(probs, num_splits=splits)
    assert mean == pytest.approx(k, rel=1e-5)
    assert std == pytest.approx(0.0, abs=1e-5)


def test_constant_predictions_give_one():
    rng = np.random.default_rng(0)
    row = rng.dirichlet(np.ones(10))
    mean, _ = inception_score(np.tile(row, (100, 1)), num_splits=5)
    assert mean == pytest.approx(1.0, abs=1e-5)


def test_matches_scipy_entropy_per_split():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(0.3 * np.ones(10), size=303)  # 3 rows are dropped by 10 splits of 30
    scores = []
    for part in np.split(probs[:300], 10):
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(p, marginal) for p in part])))
    mean, std = inception_score(probs, num_splits=10)
    assert mean == pytest.approx(np.mean(scores), rel=1e-5)
    assert std == pytest.approx(np.std(scores), rel=1e-3)
    assert 1.0 < mean < 10.0


def test_logits_are_rejected():
    with pytest.raises(ConfigError, match="softmax"):
        inception_score(np.random.default_rng(2).normal(size=(20, 5)), num_splits=2)
    with pytest.raises(ConfigError, match="num_splits"):
        inception_score(np.full((4, 2), 0.5), num_splits=5)
