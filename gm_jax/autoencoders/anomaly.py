"""Anomaly detection with autoencoders: reconstruction-error scores, ROC AUC, held-out-class evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import require


def reconstruction_error(x: jax.Array, reconstruction: jax.Array) -> jax.Array:
    """Anomaly score ``s(x) = (1/D) ‖x − x̂‖²``, the mean squared reconstruction error per example (an
    example the model reconstructs badly is scored as more anomalous; Japkowicz et al. 1995)."""
    err = jnp.square(x - reconstruction)
    return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)


def roc_auc(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Area under the ROC curve by the rank (Mann–Whitney) formula, positives = ``labels == 1`` scored high:
    ``AUC = (R₊ − n₊(n₊ + 1)/2) / (n₊ n₋)`` with ``R₊`` the sum of the positives' ranks among all scores
    and tied scores given their average rank (Hanley & McNeil 1982) — equal to P(s₊ > s₋) + ½ P(s₊ = s₋).
    Both classes must be present."""
    scores = jnp.ravel(jnp.asarray(scores, jnp.float32))
    labels = jnp.ravel(jnp.asarray(labels))
    require(scores.shape == labels.shape, f"scores and labels must have the same length, got "
            f"{scores.shape[0]} and {labels.shape[0]}")
    if not isinstance(labels, jax.core.Tracer):
        values = set(np.unique(np.asarray(labels)).tolist())
        require(values == {0, 1}, f"labels must contain both classes 0 and 1, got values {sorted(values)}")
    return _rank_auc(scores, labels == 1)


@jax.jit
def _rank_auc(scores: jax.Array, positive: jax.Array) -> jax.Array:
    sorted_scores = jnp.sort(scores)
    below = jnp.searchsorted(sorted_scores, scores, side="left")
    at_or_below = jnp.searchsorted(sorted_scores, scores, side="right")
    ranks = 0.5 * (below + at_or_below + 1).astype(jnp.float32)  # 1-based average rank within ties
    n_pos = jnp.sum(positive).astype(jnp.float32)
    n_neg = scores.shape[0] - n_pos
    rank_sum = jnp.sum(jnp.where(positive, ranks, 0.0))
    return (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)


def split_held_out_class(x: np.ndarray, labels: np.ndarray, held_out_class: int) -> np.ndarray:
    """Training set of the held-out-class protocol: the examples whose label is not ``held_out_class``
    (the model is trained on 'normal' classes only)."""
    labels = np.asarray(labels)
    require(np.any(labels == held_out_class), f"held_out_class {held_out_class} does not occur in labels")
    return np.asarray(x)[labels != held_out_class]


def held_out_class_auc(scores: jax.Array, labels: jax.Array, held_out_class: int) -> dict[str, jax.Array]:
    """Evaluation of the held-out-class protocol on a test set: the examples of ``held_out_class`` are the
    anomalies (positives). Returns ``{"auc", "score_normal", "score_anomalous"}`` (mean scores)."""
    anomalous = (jnp.asarray(labels) == held_out_class).astype(jnp.int32)
    scores = jnp.asarray(scores, jnp.float32)
    n_anom = jnp.sum(anomalous)
    return {
        "auc": roc_auc(scores, anomalous),
        "score_normal": jnp.sum(jnp.where(anomalous == 0, scores, 0.0)) / (scores.shape[0] - n_anom),
        "score_anomalous": jnp.sum(jnp.where(anomalous == 1, scores, 0.0)) / n_anom,
    }
