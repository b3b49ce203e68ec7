"""The im2col weight gradient of gm_jax.nn.im2col.conv2d equals XLA's convolution gradient."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.nn.im2col import Conv, conv2d, im2col, input_grad


@pytest.mark.parametrize("kernel_size,padding", [((3, 3), ((1, 1), (1, 1))), ((2, 3), ((1, 0), (1, 1))),
                                                 ((1, 2), ((0, 0), (1, 0))), ((1, 1), ((0, 0), (0, 0))),
                                                 ((3, 2), ((0, 0), (2, 0)))])
def test_im2col_gradients_equal_xla(kernel_size, padding):
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (2, 5, 6, 3))
    kernel = jax.random.normal(kk, (*kernel_size, 3, 4))
    y_ref = conv2d(x, kernel, padding, "xla")
    g = jax.random.normal(kg, y_ref.shape)

    def loss(mode):
        return lambda a, k: jnp.sum(conv2d(a, k, padding, mode) * g)

    np.testing.assert_allclose(conv2d(x, kernel, padding, "im2col"), y_ref, rtol=1e-6, atol=1e-6)
    dx, dk = jax.grad(loss("im2col"), argnums=(0, 1))(x, kernel)
    dx_ref, dk_ref = jax.grad(loss("xla"), argnums=(0, 1))(x, kernel)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-5)
    # independent reference for dK: the definition sum_{b,i,j} x_pad[b, i+dy, j+dx, c] g[b, i, j, o] in numpy
    xp = np.pad(np.asarray(x), ((0, 0), padding[0], padding[1], (0, 0)))
    h, w = g.shape[1:3]
    dk_np = np.zeros(kernel.shape)
    for dy in range(kernel_size[0]):
        for dx_ in range(kernel_size[1]):
            dk_np[dy, dx_] = np.einsum("bhwc,bhwo->co", xp[:, dy:dy + h, dx_:dx_ + w], np.asarray(g))
    np.testing.assert_allclose(dk, dk_np, rtol=1e-4, atol=1e-4)


def test_im2col_matrix_times_kernel_is_the_convolution():
    x = jax.random.normal(jax.random.key(1), (1, 4, 4, 2))
    kernel = jax.random.normal(jax.random.key(2), (2, 2, 2, 3))
    pad = ((1, 0), (0, 1))
    patches = im2col(x, (2, 2), pad, (4, 4))
    np.testing.assert_allclose((patches @ kernel.reshape(-1, 3)).reshape(1, 4, 4, 3),
                               conv2d(x, kernel, pad, "xla"), rtol=1e-5, atol=1e-5)


def test_unknown_weight_grad_is_refused():
    with pytest.raises(ConfigError, match="weight_grad"):
        conv2d(jnp.zeros((1, 3, 3, 1)), jnp.zeros((1, 1, 1, 1)), ((0, 0), (0, 0)), "fast")


@pytest.mark.parametrize("padding", [((1, 1), (1, 1)), ((2, 0), (1, 1)), ((0, 0), (0, 0)), ((2, 1), (0, 2))])
def test_explicit_input_gradient_equals_autodiff(padding):
    x = jax.random.normal(jax.random.key(3), (2, 9, 8, 3))
    kernel = jax.random.normal(jax.random.key(4), (3, 3, 3, 5))
    y, vjp = jax.vjp(lambda a: conv2d(a, kernel, padding, "autodiff"), x)
    g = jax.random.normal(jax.random.key(5), y.shape)
    np.testing.assert_allclose(input_grad(g, kernel, padding), vjp(g)[0], rtol=1e-5, atol=1e-5)
    for mode in ("xla", "im2col"):
        dx, dk = jax.grad(lambda a, k, m=mode: jnp.sum(conv2d(a, k, padding, m) * g), argnums=(0, 1))(x, kernel)
        dx_ref, dk_ref = jax.grad(lambda a, k: jnp.sum(conv2d(a, k, padding, "autodiff") * g),
                                  argnums=(0, 1))(x, kernel)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dk, dk_ref, rtol=1e-4, atol=1e-4)


def test_conv_module_has_flax_conv_parameters_and_values():
    x = jax.random.normal(jax.random.key(6), (2, 7, 6, 3))
    for kernel_size in ((3, 3), (2, 3)):
        ours, theirs = Conv(4, kernel_size, name="c"), nn.Conv(4, kernel_size, padding="SAME", name="c")
        p_ours, p_theirs = ours.init(jax.random.key(7), x), theirs.init(jax.random.key(7), x)
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)),
                                                             p_ours, p_theirs))
        p = jax.tree_util.tree_map(lambda a: a + 0.1, p_theirs)  # a nonzero bias too
        np.testing.assert_allclose(ours.apply(p, x), theirs.apply(p, x), rtol=1e-6, atol=1e-6)


def test_gradients_inside_a_loop_use_a_canonical_kernel_layout():
    """Autodiff's input gradient inside a while loop is a convolution with kernel layout 01oi, which XLA:CPU
    runs several times slower than its forward convolution; conv2d's custom gradient keeps every convolution
    of the loop body in the forward layout 01io (a structural check on the compiled program, not a timing)."""
    kernel = jax.random.normal(jax.random.key(8), (3, 3, 4, 4))
    x = jax.random.normal(jax.random.key(9), (2, 8, 8, 4))

    def loop(mode):
        def body(_, u):
            y, vjp = jax.vjp(lambda a: conv2d(a, kernel, ((1, 1), (1, 1)), mode), u)
            return 0.1 * vjp(y)[0]
        return jax.jit(lambda u: jax.lax.fori_loop(0, 3, body, u)).lower(x).compile().as_text()

    for mode in ("xla", "im2col"):
        convs = [line for line in loop(mode).splitlines() if "convolution(" in line]
        assert convs and not any("01oi" in line for line in convs), mode
    if jax.default_backend() == "cpu":  # the layout autodiff emits, which this module avoids
        assert any("01oi" in line for line in loop("autodiff").splitlines() if "convolution(" in line)
