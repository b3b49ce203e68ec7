"""Network shapes (traced with eval_shape, no compilation), pixel shuffle, weight demodulation and shape
errors (style mixing and noise inputs are tested on the trained family in test_family.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.gan.nets.cyclegan import CycleGANGenerator
from gm_jax.gan.nets.dcgan import DCGANDiscriminator, DCGANGenerator, minibatch_stddev
from gm_jax.gan.nets.mlp import MLPDiscriminator, MLPGenerator
from gm_jax.gan.nets.norms import BatchStatNorm
from gm_jax.gan.nets.srgan import SRGANGenerator, pixel_shuffle
from gm_jax.gan.nets.stylegan import EqualizedDense, ModulatedConv, StyleGANGenerator, modulate_weights
from gm_jax.gan.nets.unet_patchgan import PatchGANDiscriminator, UNetGenerator

KEY = jax.random.key(0)


def out_shape(module, *args):
    variables = jax.eval_shape(lambda: module.init(KEY, *args))
    return jax.eval_shape(lambda v: module.apply(v, *args), variables).shape


def test_dcgan_shapes_unconditional_and_conditional():
    z, labels = jnp.zeros((3, 16)), jnp.zeros(3, jnp.int32)
    assert out_shape(DCGANGenerator((28, 28, 1), 8), z) == (3, 28, 28, 1)
    assert out_shape(DCGANGenerator((32, 32, 3), 8, num_classes=10), z, labels) == (3, 32, 32, 3)
    assert out_shape(DCGANDiscriminator(8), jnp.zeros((3, 28, 28, 1))) == (3,)
    assert out_shape(DCGANDiscriminator(8, num_classes=10), jnp.zeros((3, 32, 32, 3)), labels) == (3,)
    assert out_shape(MLPGenerator(2, 16, 2), z) == (3, 2)
    assert out_shape(MLPDiscriminator(16, 2), jnp.zeros((3, 2))) == (3,)


def test_image_to_image_shapes():
    x = jnp.zeros((2, 32, 32, 3))
    assert out_shape(UNetGenerator(1, 8, depth=4), x) == (2, 32, 32, 1)
    assert out_shape(PatchGANDiscriminator(8, num_layers=3), x, jnp.zeros((2, 32, 32, 1))) == (2, 4, 4, 1)
    assert out_shape(CycleGANGenerator(3, 8, 2, 2), x) == (2, 32, 32, 3)
    small = jnp.zeros((2, 8, 8, 3))
    assert out_shape(SRGANGenerator(2, 3, 8, 2), small) == (2, 16, 16, 3)
    assert out_shape(SRGANGenerator(4, 3, 8, 2), small) == (2, 32, 32, 3)
    assert out_shape(StyleGANGenerator(16, 3, 8, 8, 2), jnp.zeros((2, 8))) == (2, 16, 16, 3)


def test_batch_stat_norm_normalises_each_channel():
    h = jax.random.normal(KEY, (6, 5, 5, 3)) * 3.0 + 2.0
    norm = BatchStatNorm()
    out = norm.apply(norm.init(KEY, h), h)
    np.testing.assert_allclose(jnp.mean(out, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.var(out, axis=(0, 1, 2)), 1.0, rtol=1e-3)


def test_minibatch_stddev_and_equalized_dense():
    """Minibatch stddev (Karras et al. 2018, Sec. 3): the appended channel is the mean over features of the
    per-feature batch std (numpy reference), near 0 for a batch of copies. EqualizedDense: y = x (lr_mul W /
    sqrt(fan_in)) + lr_mul b."""
    h = np.random.default_rng(1).normal(size=(5, 3, 3, 4)).astype(np.float32)
    out = np.asarray(minibatch_stddev(jnp.asarray(h)))
    np.testing.assert_array_equal(out[..., :4], h)
    np.testing.assert_allclose(out[..., 4], np.mean(np.std(h, axis=0)), rtol=1e-5)
    copies = np.asarray(minibatch_stddev(jnp.broadcast_to(jnp.asarray(h[:1]), h.shape)))
    assert float(np.max(copies[..., 4])) < 1e-3
    layer = EqualizedDense(3, lr_mul=0.01)
    x = jnp.asarray(h[:, 0, 0, :])
    p = {"kernel": jnp.asarray(np.arange(12.0).reshape(4, 3)), "bias": jnp.array([1.0, 2.0, 3.0])}
    np.testing.assert_allclose(layer.apply({"params": p}, x), h[:, 0, 0, :] @ (0.01 * np.arange(12.0).reshape(4, 3)
                                                                                / 2.0) + 0.01 * np.array([1, 2, 3]),
                               rtol=1e-5)


def test_pixel_shuffle_matches_loop_reference():
    r = 2
    x = np.arange(2 * 3 * 2 * 12, dtype=np.float32).reshape(2, 3, 2, 12)
    ref = np.zeros((2, 6, 4, 3), np.float32)
    for b, h, w, c, i, j in np.ndindex(2, 3, 2, 3, r, r):
        ref[b, h * r + i, w * r + j, c] = x[b, h, w, c * r * r + i * r + j]
    np.testing.assert_array_equal(pixel_shuffle(jnp.asarray(x), r), ref)


def test_modulation_and_demodulation():
    rng = np.random.default_rng(0)
    w, s = rng.normal(size=(3, 3, 4, 5)).astype(np.float32), rng.uniform(0.5, 2.0, (2, 4)).astype(np.float32)
    modulate = jax.jit(modulate_weights, static_argnums=2)
    mod = np.asarray(modulate(w, s, False))
    np.testing.assert_allclose(mod[1, :, :, 2, :], w[:, :, 2, :] * s[1, 2], rtol=1e-6)
    demod = np.asarray(modulate(w, s, True))
    np.testing.assert_allclose(np.sqrt(np.sum(demod ** 2, axis=(1, 2, 3))), 1.0, rtol=1e-5)
    np.testing.assert_allclose(demod, mod / np.sqrt(np.sum(mod ** 2, axis=(1, 2, 3), keepdims=True)), rtol=1e-5)
    # ModulatedConv (input scaling, shared convolution, output demodulation) equals convolving each example
    # with its own modulated-demodulated kernel (StyleGAN2, eqs. 1-3).
    conv = ModulatedConv(5)
    x, wlat = jnp.asarray(rng.normal(size=(2, 6, 6, 4)), jnp.float32), jnp.asarray(rng.normal(size=(2, 3)))
    params = conv.init(KEY, x, wlat)["params"]
    style = wlat @ params["affine"]["kernel"] + params["affine"]["bias"]
    kernels = modulate(params["kernel"] / np.sqrt(3 * 3 * 4), style, True)
    ref = [jax.lax.conv_general_dilated(x[i:i + 1], kernels[i], (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))[0] for i in range(2)]
    np.testing.assert_allclose(jax.jit(conv.apply)({"params": params}, x, wlat), np.stack(ref), atol=1e-4)


def test_bad_shapes_and_options_raise_one_line_config_errors():
    z = jnp.zeros((3, 16))
    bad = [
        lambda: out_shape(DCGANGenerator((28, 28, 1), 8, num_classes=10), z, jnp.zeros(2, jnp.int32)),
        lambda: out_shape(DCGANDiscriminator(8, num_classes=10), jnp.zeros((3, 28, 28, 1))),
        lambda: out_shape(PatchGANDiscriminator(8), jnp.zeros((2, 32, 32, 3)), jnp.zeros((2, 16, 16, 3))),
        lambda: out_shape(SRGANGenerator(3, 3, 8, 1), jnp.zeros((1, 8, 8, 3))),
        lambda: out_shape(DCGANGenerator((28, 28, 1), 8, normalization="spectral"), z),
        lambda: out_shape(DCGANGenerator((30, 30, 1), 8), z),
    ]
    for call in bad:
        with pytest.raises(ConfigError) as err:
            call()
        assert "\n" not in str(err.value)
