"""Mini-batch optimal-transport coupling (OT-CFM, Tong et al. 2023, sec. 3.2; Pooladian et al. 2023).

Within a batch of ``n`` source and ``n`` data points, the exact OT plan for squared Euclidean cost with
uniform weights is a permutation (Birkhoff-von Neumann: the extreme points of the set of doubly
stochastic matrices are permutations), so solving the assignment problem
``min_sigma sum_i |x0_i - x1_sigma(i)|^2`` is exact. We solve it on the host with
``scipy.optimize.linear_sum_assignment`` (Hungarian-type algorithm, O(n^3)) through ``jax.pure_callback``,
so it can sit inside a jitted training step; no gradient flows through the pairing (it is a choice of
coupling, not a function to differentiate).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from gm_jax.core.errors import require


def squared_distances(x0: jax.Array, x1: jax.Array) -> jax.Array:
    """Cost matrix ``C_ij = |x0_i - x1_j|^2`` of two batches (examples flattened)."""
    a = x0.reshape(x0.shape[0], -1)
    b = x1.reshape(x1.shape[0], -1)
    return jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2.0 * a @ b.T


def _assignment_host(cost: np.ndarray) -> np.ndarray:
    rows, cols = linear_sum_assignment(np.asarray(cost, np.float64))
    perm = np.empty(cost.shape[0], np.int32)
    perm[rows] = cols
    return perm


def ot_assignment(x0: jax.Array, x1: jax.Array) -> jax.Array:
    """Permutation ``sigma`` (int32 ``[n]``) minimizing ``sum_i |x0_i - x1_sigma(i)|^2``: the exact
    mini-batch OT plan between two equal-size uniform batches (Tong et al. 2023, eq. 18)."""
    require(x0.shape == x1.shape, f"OT coupling needs batches of equal shape, got {x0.shape} and {x1.shape}")
    cost = jax.lax.stop_gradient(squared_distances(x0, x1))
    out = jax.ShapeDtypeStruct((x0.shape[0],), jnp.int32)
    return jax.pure_callback(_assignment_host, out, cost)


def ot_couple(x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Re-pair the batch along the OT plan: returns ``(x0, x1[sigma])`` (Tong et al. 2023, Alg. 1)."""
    return x0, x1[ot_assignment(x0, x1)]
