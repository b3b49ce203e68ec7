"""Inception Score (Salimans et al. 2016) from a classifier's class probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import require


def inception_score_of(probs: jax.Array) -> jax.Array:
    """IS = exp(E_x KL(p(y|x) || p(y))) with p(y) = E_x p(y|x) (Salimans et al. 2016, sec. 4);
    ``probs`` [N, K] rows of p(y|x). Zero probabilities contribute zero (0 log 0 = 0)."""
    marginal = jnp.mean(probs, axis=0, keepdims=True)
    kl = jnp.sum(jax.scipy.special.xlogy(probs, probs) - jax.scipy.special.xlogy(probs, marginal), axis=1)
    return jnp.exp(jnp.mean(kl))


def inception_score(probs: jax.Array, num_splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016, sec. 4) of class probabilities ``probs`` [N, K], computed on
    ``num_splits`` consecutive equal splits (the last N mod num_splits rows are dropped); returns the mean
    and standard deviation over splits. Ranges from 1 (one constant prediction) to K (confident, uniform
    over classes)."""
    p = np.asarray(probs, np.float64)
    require(p.ndim == 2, f"probs must have shape [N, K], got {list(p.shape)}")
    require(1 <= num_splits <= p.shape[0],
            f"num_splits must be in [1, {p.shape[0]}] (the number of rows), got {num_splits}")
    require(bool(np.all(p >= 0)) and bool(np.allclose(p.sum(axis=1), 1.0, atol=1e-3)),
            "probs rows must be non-negative and sum to 1; pass softmax outputs, not logits")
    size = p.shape[0] // num_splits
    splits = jnp.asarray(p[:size * num_splits].reshape(num_splits, size, p.shape[1]), jnp.float32)
    scores = np.asarray(jax.vmap(inception_score_of)(splits), np.float64)
    return float(scores.mean()), float(scores.std())
