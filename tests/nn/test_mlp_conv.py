"""MLP against a numpy forward pass; conv encoder/decoder sizes for 28x28x1, 32x32x3 and 8x8x1 images."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.nn.conv import ConvDecoder, ConvEncoder, downsampled_sizes
from gm_jax.nn.mlp import MLP


def test_mlp_matches_numpy_forward():
    mlp = MLP((7, 5, 3), activation=jnp.tanh)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    params = jax.jit(mlp.init)(jax.random.key(0), jnp.asarray(x))["params"]
    h = x.astype(np.float64)
    for i in range(3):
        layer = params[f"dense_{i}"]
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i < 2:  # no activation after the last layer
            h = np.tanh(h)
    np.testing.assert_allclose(jax.jit(mlp.apply)({"params": params}, jnp.asarray(x)), h, rtol=1e-5, atol=1e-5)
    final = MLP((3,), activation=nn.relu, activate_final=True)
    out = jax.jit(lambda x: final.apply(final.init(jax.random.key(1), x), x))(jnp.asarray(x))
    assert float(out.min()) >= 0.0 and float(out.max()) > 0.0


def test_downsampled_sizes():
    assert downsampled_sizes(28, 3) == [28, 14, 7, 4]
    assert downsampled_sizes(32, 3) == [32, 16, 8, 4]
    assert downsampled_sizes(8, 3) == [8, 4, 2, 1]


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1)])
def test_conv_encoder_decoder_shapes(shape):
    channels = (4, 8)
    enc, dec = ConvEncoder(channels, 6), ConvDecoder(channels, shape)
    x = jax.ShapeDtypeStruct((2,) + shape, jnp.float32)
    # Shapes only: abstract evaluation, nothing is compiled.
    ep = jax.eval_shape(lambda x: enc.init(jax.random.key(0), x), x)
    z, state = jax.eval_shape(lambda p, x: enc.apply(p, x, capture_intermediates=True), ep, x)
    assert z.shape == (2, 6)
    sizes = downsampled_sizes(shape[0], 2)
    for i, ch in enumerate(channels):
        assert state["intermediates"][f"conv_{i}"]["__call__"][0].shape == (2, sizes[i + 1], sizes[i + 1], ch)
    dp = jax.eval_shape(lambda z: dec.init(jax.random.key(1), z), z)
    y, dstate = jax.eval_shape(lambda p, z: dec.apply(p, z, capture_intermediates=True), dp, z)
    assert y.shape == (2,) + shape
    # The first transposed conv doubles the coarsest side before the crop to the next encoder size.
    assert dstate["intermediates"]["deconv_0"]["__call__"][0].shape[1] == 2 * sizes[-1]
