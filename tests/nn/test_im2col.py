"""The im2col weight gradient of gm_jax.nn.im2col.conv2d equals XLA's convolution gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.nn.im2col import conv2d, im2col


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
