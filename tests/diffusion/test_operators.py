"""Measurement operators: exact adjoints, Moore–Penrose identities, A⁺ against numpy's pinv of the dense
matrix, the SVD reproducing A, Aᵀ and A⁺, closed forms (pooling A⁺ = s² Aᵀ, colourization A⁺ = 3 Aᵀ),
the blur kernel and matrix against numpy references, and one-line ConfigErrors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.diffusion import operators as O

RNG = np.random.default_rng(0)

OPERATORS = {
    "box": lambda: O.box_mask((6, 5, 2), 1, 1, 3, 2),
    "random": lambda: O.random_mask((6, 5, 2), 0.4, seed=3),
    "half": lambda: O.half_mask((6, 4, 1), "bottom"),
    "mask_array": lambda: O.mask_operator(RNG.integers(0, 2, (4, 4, 3)), (4, 4, 3)),
    "down2": lambda: O.downsample((8, 6, 2), 2),
    "down4": lambda: O.downsample((8, 8, 1), 4),
    "blur_reflect": lambda: O.blur((7, 6, 2), 0.7),
    "blur_circular": lambda: O.blur((6, 6, 1), 0.6, boundary="circular"),
    "blur_zero": lambda: O.blur((5, 6, 1), 0.8, radius=2, boundary="zero"),
    "colour": lambda: O.colourization((3, 4, 3)),
    "matrix": lambda: O.matrix_operator(RNG.normal(size=(3, 7))),
}


def _rand(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _dense_pinv(op):
    """A⁺ as a dense [d, m] matrix, from op.pinv on the basis of the measurement space."""
    m = int(np.prod(op.y_shape))
    return np.asarray(op.pinv(jnp.eye(m).reshape((m,) + op.y_shape)).reshape(m, -1)).T


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_adjoint_and_moore_penrose(name):
    op = OPERATORS[name]()
    x, y = _rand((3,) + op.x_shape), _rand((3,) + op.y_shape, 2)
    lhs = jnp.sum(op.A(x) * y, axis=tuple(range(1, y.ndim)))
    rhs = jnp.sum(x * op.AT(y), axis=tuple(range(1, x.ndim)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5, atol=1e-5)
    a = np.asarray(O.dense_matrix(op), np.float64)
    p = _dense_pinv(op)
    np.testing.assert_allclose(a @ p @ a, a, atol=2e-5)  # A A⁺ A = A
    np.testing.assert_allclose(p @ a @ p, p, atol=2e-4 * max(1.0, np.abs(p).max()))  # A⁺ A A⁺ = A⁺
    np.testing.assert_allclose(a @ p, (a @ p).T, atol=2e-5)  # (A A⁺)ᵀ = A A⁺
    np.testing.assert_allclose(p @ a, (p @ a).T, atol=2e-5)  # (A⁺ A)ᵀ = A⁺ A
    np.testing.assert_allclose(p, np.linalg.pinv(a, rcond=1e-4), atol=2e-5 * max(1.0, np.abs(p).max()))


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_svd_reproduces_operator(name):
    """A x = U(s ⊙ Vᵀ x), Aᵀ y = V(s ⊙ Uᵀ y), V orthogonal, U Uᵀ = I on the measurement space."""
    op = OPERATORS[name]()
    x, y = _rand((2,) + op.x_shape), _rand((2,) + op.y_shape, 2)
    s = op.singular_values
    assert s.shape == op.x_shape and bool(jnp.all(s >= 0))
    np.testing.assert_allclose(op.U(s * op.Vt(x)), op.A(x), atol=1e-5)
    np.testing.assert_allclose(op.V(s * op.Ut(y)), op.AT(y), atol=1e-5)
    np.testing.assert_allclose(op.V(op.Vt(x)), x, atol=1e-5)
    np.testing.assert_allclose(op.U(op.Ut(y)), y, atol=1e-5)
    np.testing.assert_allclose(jnp.sum(op.Vt(x) ** 2), jnp.sum(x**2), rtol=1e-5)


def test_closed_forms():
    """Pooling: every singular value is 1/s, A Aᵀ = I/s², A⁺ = s² Aᵀ; colourization: A⁺ = 3 Aᵀ; masks:
    A = Aᵀ = A⁺ = diag(m)."""
    for s in (2, 4):
        op = O.downsample((8, 8, 2), s)
        a = np.asarray(O.dense_matrix(op))
        np.testing.assert_allclose(a @ a.T, np.eye(a.shape[0]) / s**2, atol=1e-6)
        np.testing.assert_allclose(_dense_pinv(op), s**2 * a.T, atol=1e-5)
        nonzero = np.asarray(op.singular_values)[np.asarray(op.singular_values) > 1e-6]
        np.testing.assert_allclose(nonzero, np.full(a.shape[0], 1.0 / s), rtol=1e-5)
        x = _rand((1, 8, 8, 2))
        ref = np.asarray(x).reshape(1, 8 // s, s, 8 // s, s, 2).mean((2, 4))
        np.testing.assert_allclose(op.A(x), ref, atol=1e-6)
    op = O.colourization((2, 3, 3))
    a = np.asarray(O.dense_matrix(op))
    np.testing.assert_allclose(_dense_pinv(op), 3 * a.T, atol=1e-5)
    x = _rand((2, 2, 3, 3))
    np.testing.assert_allclose(op.A(x), np.asarray(x).mean(-1, keepdims=True), atol=1e-6)
    op = O.box_mask((4, 4, 1), 1, 0, 2, 3)
    m = np.ones((4, 4, 1))
    m[1:3, 0:3] = 0
    np.testing.assert_array_equal(np.asarray(O.dense_matrix(op)), np.diag(m.ravel()))
    np.testing.assert_array_equal(_dense_pinv(op), np.diag(m.ravel()))
    half = np.asarray(O.half_mask((4, 6, 1), "right").mask)[..., 0]
    assert half[:, :3].min() == 1 and half[:, 3:].max() == 0


def test_blur_kernel_and_matrix_match_numpy():
    k = O.gaussian_kernel(1.3)
    assert len(k) == 2 * 4 + 1 and abs(k.sum() - 1) < 1e-12
    j = np.arange(-4, 5)
    np.testing.assert_allclose(k, np.exp(-j**2 / (2 * 1.3**2)) / np.exp(-j**2 / (2 * 1.3**2)).sum())
    op = O.blur((7, 9, 2), 1.0, radius=2)
    k = O.gaussian_kernel(1.0, 2)
    x = np.asarray(_rand((2, 7, 9, 2)), np.float64)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="symmetric")
    ref = sum(k[a] * k[b] * padded[:, a:a + 7, b:b + 9] for a in range(5) for b in range(5))
    np.testing.assert_allclose(op.A(jnp.asarray(x, jnp.float32)), ref, atol=1e-5)
    circ = O.blur((6, 5, 1), 1.0, radius=2, boundary="circular")
    padded = np.pad(x[:, :6, :5, :1], ((0, 0), (2, 2), (2, 2), (0, 0)), mode="wrap")
    ref = sum(k[a] * k[b] * padded[:, a:a + 6, b:b + 5] for a in range(5) for b in range(5))
    np.testing.assert_allclose(circ.A(jnp.asarray(x[:, :6, :5, :1], jnp.float32)), ref, atol=1e-5)
    np.testing.assert_allclose(O.convolution_matrix(6, k, "reflect").sum(1), np.ones(6), atol=1e-12)


def test_mask_params_are_runtime_arrays():
    """A new mask of the same shape reuses the compiled program (the mask is a pytree leaf)."""
    fn = jax.jit(lambda op, x: op.A(x))
    x = _rand((1, 4, 4, 1))
    a = fn(O.random_mask((4, 4, 1), 0.5, seed=1), x)
    b = fn(O.random_mask((4, 4, 1), 0.5, seed=2), x)
    assert fn._cache_size() == 1 and not np.allclose(a, b)


@pytest.mark.parametrize("build,match", [
    (lambda: O.downsample((8, 6, 1), 4), "does not divide the image size 8x6"),
    (lambda: O.downsample((8, 8, 1), 0), "scale must be an integer >= 1"),
    (lambda: O.mask_operator(np.ones((3, 3)), (4, 4, 1)), r"mask has shape \(3, 3\), expected \(4, 4, 1\)"),
    (lambda: O.mask_operator(np.full((4, 4), 0.5), (4, 4, 1)), "mask must be binary"),
    (lambda: O.colourization((4, 4, 1)), "colourization needs C = 3"),
    (lambda: O.blur((4, 4, 1), 0.0), "blur sigma must be finite and > 0"),
    (lambda: O.blur((4, 4, 1), 1.0, boundary="mirror"), "unknown blur boundary 'mirror'"),
    (lambda: O.box_mask((4, 4, 1), 2, 2, 3, 1), "does not fit a 4x4 image"),
    (lambda: O.half_mask((4, 4, 1), "middle"), "unknown half-mask side"),
    (lambda: O.random_mask((4, 4), 0.5), r"image shape must be \(H, W, C\)"),
])
def test_bad_input_is_one_line(build, match):
    with pytest.raises(ConfigError, match=match) as err:
        build()
    assert "\n" not in str(err.value)


def test_shape_check_is_one_line():
    op = O.downsample((8, 8, 1), 2)
    with pytest.raises(ConfigError, match="takes") as err:
        op.check_input(jnp.zeros((2, 8, 8, 3)))
    assert "\n" not in str(err.value)
