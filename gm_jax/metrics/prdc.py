"""Precision and recall of generative models with k-NN manifolds (Kynkäänniemi et al. 2019), density and
coverage (Naeem et al. 2020).

Each sample set approximates its manifold by the union of balls around its points whose radii are the
distance to the k-th nearest neighbour within the same set. Memory is O(N M) for N real and M fake rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gm_jax.core.errors import require


def pairwise_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    """Euclidean distances ||a_i - b_j|| as a [N, M] matrix via ||a||^2 + ||b||^2 - 2 a.b (clipped at 0)."""
    sq = jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :] - 2.0 * a @ b.T
    return jnp.sqrt(jnp.maximum(sq, 0.0))


def knn_radii(x: jax.Array, k: int) -> jax.Array:
    """Distance from each row of ``x`` to its k-th nearest other row (the k-NN radius of Kynkäänniemi et al. 2019)."""
    dist = pairwise_distances(x, x)
    dist = jnp.where(jnp.eye(x.shape[0], dtype=bool), -1.0, dist)  # self first, whatever the round-off
    return jnp.sort(dist, axis=1)[:, k]


@jax.jit(static_argnames=("k",))
def _prdc(real: jax.Array, fake: jax.Array, k: int) -> dict[str, jax.Array]:
    # Centre both sets on the real mean: distances are unchanged and float32 cancellation is smaller.
    centre = jnp.mean(real, axis=0)
    real, fake = real - centre, fake - centre
    real_radii = knn_radii(real, k)
    fake_radii = knn_radii(fake, k)
    dist = pairwise_distances(real, fake)  # [N, M]
    in_real_ball = dist <= real_radii[:, None]  # fake j inside the ball of real i
    in_fake_ball = dist <= fake_radii[None, :]  # real i inside the ball of fake j
    return {
        "precision": jnp.mean(jnp.any(in_real_ball, axis=0)),
        "recall": jnp.mean(jnp.any(in_fake_ball, axis=1)),
        "density": jnp.sum(in_real_ball) / (k * fake.shape[0]),
        "coverage": jnp.mean(jnp.min(dist, axis=1) <= real_radii),
    }


def prdc(real_features: jax.Array, fake_features: jax.Array, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake_features`` [M, F] against ``real_features``
    [N, F] with k-NN radii r_k (distance to the k-th nearest neighbour within the same set):

    precision = 1/M sum_j 1[exists i: ||Y_j - X_i|| <= r_k(X_i)]      (Kynkäänniemi et al. 2019)
    recall    = 1/N sum_i 1[exists j: ||X_i - Y_j|| <= r_k(Y_j)]      (Kynkäänniemi et al. 2019)
    density   = 1/(kM) sum_j sum_i 1[||Y_j - X_i|| <= r_k(X_i)]       (Naeem et al. 2020)
    coverage  = 1/N sum_i 1[min_j ||X_i - Y_j|| <= r_k(X_i)]          (Naeem et al. 2020)

    For identical sets precision = recall = coverage = 1 and density = (k + 1) / k (each point lies in its
    own ball and in those of its k nearest neighbours).
    """
    real = jnp.asarray(real_features, jnp.float32)
    fake = jnp.asarray(fake_features, jnp.float32)
    require(real.ndim == 2 and fake.ndim == 2 and real.shape[1] == fake.shape[1],
            f"PRDC needs feature sets [N, F] and [M, F] of one width, got {list(real.shape)} and "
            f"{list(fake.shape)}")
    limit = min(real.shape[0], fake.shape[0]) - 1
    require(1 <= k <= limit, f"k must be in [1, {limit}] (fewer than the smaller set's size), got {k}")
    return {name: float(value) for name, value in _prdc(real, fake, int(k)).items()}
