"""Explicit Runge–Kutta tableaux and steps shared by the ODE solvers of the model families.

The Dormand–Prince 5(4) pair (Dormand & Prince 1980; Hairer, Nørsett & Wanner 1993, Sec. II.5, Table 5.2):
nodes c, stage matrix a (row i: the a_ij, j < i), the 5th-order weights b5 (equal to the last row of a: the
pair is "first same as last", FSAL) and the embedded 4th-order weights b4. :func:`dopri5_step` is one step
of it on any array-valued right-hand side ``f(y, t)``; the adaptive step-size control around it stays with
its callers (the diffusion sampler and the flow-matching integrator).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

DP_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
DP_B5 = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0])
DP_B4 = np.array([5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])


def dopri5_step(f: Callable[[jax.Array, jax.Array], jax.Array], y: jax.Array, t: jax.Array, h: jax.Array,
                k1: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One Dormand–Prince 5(4) step from t to t + h (h < 0 integrates backwards) with k1 = f(y, t) given:
    k_i = f(y + h Σ_{j<i} a_ij k_j, t + c_i h) for i = 2..7 (6 new calls of f). Returns the 5th-order
    y_new = y + h Σ b5_i k_i, the local error estimate h Σ (b5_i − b4_i) k_i and k7 = f(y_new, t + h), the k1
    of the next step (FSAL). Zero coefficients are skipped."""
    ks = [k1]
    for i in range(1, 7):
        y_i = y + h * sum(a * k for a, k in zip(DP_A[i], ks, strict=True) if a != 0.0)
        ks.append(f(y_i, t + DP_C[i] * h))
    y_new = y + h * sum(b * k for b, k in zip(DP_B5, ks, strict=True) if b != 0.0)
    err = h * sum((b5 - b4) * k for b5, b4, k in zip(DP_B5, DP_B4, ks, strict=True) if b5 != b4)
    return y_new, err, ks[6]


__all__ = ["DP_A", "DP_B4", "DP_B5", "DP_C", "dopri5_step"]
