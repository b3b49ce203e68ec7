"""The Dormand–Prince 5(4) tableau against the Runge–Kutta order conditions (Butcher's rooted trees up to
order 5; Hairer et al. 1993, Sec. II.2) and its single step against the pair's stability function."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.runge_kutta import DP_A, DP_B4, DP_B5, DP_C, dopri5_step

A = np.zeros((7, 7))
for _i, _row in enumerate(DP_A):
    A[_i, : len(_row)] = _row
C = np.asarray(DP_C, np.float64)


def order_conditions(b):
    """(Φ(tree), 1/γ(tree)) for every rooted tree with at most 5 nodes: the elementary weights of the
    method (b, A, c) and what the exact solution needs (Hairer et al. 1993, Theorem II.2.13)."""
    ac, ac2, ac3 = A @ C, A @ C**2, A @ C**3
    aac, aac2, aaac = A @ ac, A @ ac2, A @ (A @ ac)
    return {
        1: [(b.sum(), 1.0)],
        2: [(b @ C, 1 / 2)],
        3: [(b @ C**2, 1 / 3), (b @ ac, 1 / 6)],
        4: [(b @ C**3, 1 / 4), (b @ (C * ac), 1 / 8), (b @ ac2, 1 / 12), (b @ aac, 1 / 24)],
        5: [(b @ C**4, 1 / 5), (b @ (C**2 * ac), 1 / 10), (b @ (C * ac2), 1 / 15), (b @ (C * aac), 1 / 30),
            (b @ ac**2, 1 / 20), (b @ ac3, 1 / 20), (b @ (A @ (C * ac)), 1 / 40), (b @ aac2, 1 / 60),
            (b @ aaac, 1 / 120)],
    }


def test_tableau_shape_row_sums_and_fsal():
    assert [len(r) for r in DP_A] == list(range(7))
    np.testing.assert_allclose(A.sum(1), C, rtol=0, atol=1e-14)  # c_i = Σ_j a_ij
    np.testing.assert_array_equal(A[6], DP_B5)  # first same as last: the last stage is the new point
    assert C[6] == 1.0 and DP_B5[6] == 0.0 and DP_B4[6] != 0.0


@pytest.mark.parametrize("b,order", [(DP_B5, 5), (DP_B4, 4)])
def test_order_conditions(b, order):
    """b5 meets every condition up to order 5, b4 every one up to order 4 and fails some of order 5 (so the
    difference of the two is a genuine error estimate)."""
    conds = order_conditions(np.asarray(b, np.float64))
    for p in range(1, order + 1):
        for k, (phi, want) in enumerate(conds[p]):
            assert abs(phi - want) < 1e-14, (p, k, phi, want)
    if order == 4:
        assert max(abs(phi - want) for phi, want in conds[5]) > 1e-4


def test_step_on_linear_ode_is_the_stability_function():
    """y' = λ y: one step multiplies y by R(z) = Σ_{k≤5} z^k/k! + z^6/600, z = hλ (DOPRI5's stability
    function, Hairer & Wanner 1996, Sec. IV.2), the error estimate is (R − R̂)(z) y with the embedded
    R̂(z) = Σ_{k≤4} z^k/k! + 0.00914166 z^5 + ... (from b4), and k7 = f(y_new)."""
    lam, h, t = -1.3, 0.4, 0.25
    with jax.enable_x64(True):
        y = jnp.array([1.0, -2.0, 0.5], jnp.float64)
        f = lambda y_, t_: lam * y_ * jnp.ones_like(t_)
        y_new, err, k7 = dopri5_step(f, y, jnp.float64(t), jnp.float64(h), f(y, t))
        z = h * lam
        r5 = sum(z**k / math.factorial(k) for k in range(6)) + z**6 / 600
        # R̂(z) = 1 + z b4ᵀ(I − zA)⁻¹ 1 of the embedded weights, solved in numpy
        r4 = 1 + z * DP_B4 @ np.linalg.solve(np.eye(7) - z * A, np.ones(7))
        np.testing.assert_allclose(np.asarray(y_new), r5 * np.asarray(y), rtol=1e-14)
        np.testing.assert_allclose(np.asarray(err), (r5 - r4) * np.asarray(y), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(k7), lam * np.asarray(y_new), rtol=1e-14)


def test_step_is_exact_for_quartic_quadrature():
    """y' = 5 τ⁴ (no y): the 5th-order weights integrate degree 4 exactly, the 4th-order ones do not."""
    t, h = 0.3, 0.5
    with jax.enable_x64(True):
        f = lambda y_, t_: 5.0 * t_**4 * jnp.ones_like(y_)
        y = jnp.zeros((1,), jnp.float64)
        y_new, err, _ = dopri5_step(f, y, jnp.float64(t), jnp.float64(h), f(y, t))
    np.testing.assert_allclose(float(y_new[0]), (t + h) ** 5 - t**5, rtol=1e-14)
    assert abs(float(err[0])) > 1e-6
