"""U-Net: the DDPM CIFAR-10 size (35.7M parameters, by eval_shape only), tiny forward passes with and
without attention and labels, the time embedding and attention's permutation equivariance; the unconditioned
net reproduces its recorded parameter tree and outputs, and the text-conditioned net on 7×7 latents."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.nn import SelfAttention2D, UNet, sinusoidal_embedding, unet_config
from gm_jax.nn.unet import upsample_to


def _count(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_ddpm_cifar10_parameter_count():
    model = UNet(**unet_config("ddpm_cifar10"))
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,))))
    n = _count(shapes)
    assert round(n / 1e6, 1) == 35.7, n  # Ho et al. 2020, App. B: 35.7M


def _perturbed(params, key):
    """Zero-initialized output layers make every output 0; perturb all parameters to test dependence."""
    leaves, tree = jax.tree.flatten(params)
    rs = np.random.RandomState(int(jax.random.randint(key, (), 0, 2**30)))  # numpy draws: no JAX compile per shape
    noisy = [p + jnp.asarray(0.1 * rs.standard_normal(p.shape), p.dtype) for p in leaves]
    return jax.tree.unflatten(tree, noisy)


@pytest.mark.parametrize("attn,classes", [((), 0), ((8,), 5)])
def test_tiny_unet_forward_with_and_without_attention_and_labels(attn, classes):
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    t = jnp.array([3.0, 50.0])
    # ch=64: at the tiny width 16 (and 32) group_count gives one channel per GroupNorm group, which removes
    # the per-channel time/label shift of every ResidualBlock, so t and the label would have no effect at all
    # (the assertions below then held only through float32 round-off).
    model = UNet(**unet_config("tiny", ch=64, attn_resolutions=attn, num_classes=classes))
    label = jnp.array([1, 4]) if classes else None
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), x, t, label))["params"]
    assert ("down0_attn0" in shapes) == bool(attn) and ("class_embed" in shapes) == bool(classes)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    params = _perturbed(zeros, jax.random.key(2))  # random weights (no init compile, all outputs non-trivial)
    apply = jax.jit(lambda p, t, lab: model.apply({"params": p}, x, t, lab))
    out = np.asarray(apply(params, t, label))
    assert out.shape == x.shape and np.all(np.isfinite(out))
    assert not np.allclose(out, apply(params, t + 100.0, label))  # the output depends on t
    if classes:
        null = np.asarray(apply(params, t, jnp.array([classes, classes])))
        assert not np.allclose(out, null)  # and on the label; the last row is the null label


def test_sinusoidal_embedding_values():
    t = jnp.array([0.0, 7.0])
    emb = np.asarray(sinusoidal_embedding(t, 6))
    freqs = np.exp(-np.log(10000.0) * np.arange(3) / 3)
    np.testing.assert_allclose(emb[1], np.concatenate([np.sin(7 * freqs), np.cos(7 * freqs)]), rtol=1e-5)
    np.testing.assert_allclose(emb[0], [0, 0, 0, 1, 1, 1])


def test_attention_is_permutation_equivariant():
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 8))
    attn = SelfAttention2D(num_heads=2)
    params = _perturbed(attn.init(jax.random.key(1), x)["params"], jax.random.key(2))
    perm = np.random.RandomState(0).permutation(16)
    flat = lambda a: a.reshape(1, 16, 8)
    apply = jax.jit(lambda a: attn.apply({"params": params}, a))
    out = flat(apply(x))
    out_perm = flat(apply(flat(x)[:, perm].reshape(1, 4, 4, 8)))
    np.testing.assert_allclose(out_perm, out[:, perm], rtol=1e-4, atol=1e-5)


# Recorded from the U-Net before text conditioning existed (context_dim = 0 must reproduce it exactly):
# parameter count, leaf count, sha256 of the sorted "path(shape)" rows, and sum, Σ|·| and Σ(·)² of the output
# for the PRNG-free parameters of ``_fixed`` and input sin(0.3 i) (so the values do not depend on JAX's threefry mode).
# The outputs were re-recorded once, when GroupNorm got ≥ 4 channels per group (group_count): with one channel
# per group the nets of width ≤ 32 ignored t and the label (test_time_and_label_reach_the_output).
_RECORDED = {
    "tiny": ((2, 8, 8, 3), 164563, 114, "1a72ecae24fce8c4", (-11.132278, 12.954185, 0.6546291)),
    "small": ((2, 28, 28, 1), 1062497, 152, "93159448634c7787", (-0.0347074, 20.659926, 1.8292427)),
}


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_time_and_label_reach_the_output(name):
    """The timestep and class embeddings enter every residual block as a per-channel shift before its
    second GroupNorm; the output must move with them far beyond round-off (it did not for widths ≤ 32 when
    each group held one channel, which normalizes such a shift away)."""
    model = UNet(**unet_config(name, dropout=0.0, num_classes=3))
    shape = (2, 8, 8, 1)
    x = _fixed(shape, 5)
    t = jnp.array([3.0, 50.0])
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), x, t, jnp.array([0, 1])))["params"]
    flat, tree = jax.tree.flatten(shapes)
    params = {"params": jax.tree.unflatten(tree, [_fixed(leaf.shape, j) for j, leaf in enumerate(flat)])}
    f = jax.jit(lambda t, y: model.apply(params, x, t, y))
    base = np.asarray(f(t, jnp.array([0, 1])))
    scale = np.abs(base).mean()
    assert np.abs(np.asarray(f(t + 100.0, jnp.array([0, 1]))) - base).mean() > 1e-5 * scale  # round-off: ~1e-7
    assert np.abs(np.asarray(f(t, jnp.array([2, 2]))) - base).mean() > 1e-5 * scale  # round-off: ~1e-7


def _fixed(shape, offset=0):
    """0.1·sin(1 + 0.37 i + offset) over the flat index i, float32 (computed in numpy float64)."""
    n = int(np.prod(shape))
    return jnp.asarray(0.1 * np.sin(1.0 + 0.37 * np.arange(n) + offset).reshape(shape), jnp.float32)


@pytest.mark.parametrize("name", sorted(_RECORDED))
def test_unconditioned_unet_parameter_tree_and_outputs_unchanged(name):
    shape, count, leaves, digest, stats = _RECORDED[name]
    model = UNet(**unet_config(name, dropout=0.0))
    x = jnp.asarray(np.sin(0.3 * np.arange(int(np.prod(shape)))).reshape(shape), jnp.float32)
    t = jnp.array([3.0, 50.0])
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), x, t))["params"]
    rows = sorted("/".join(p.key for p in path) + str(tuple(leaf.shape))
                  for path, leaf in jax.tree_util.tree_leaves_with_path(shapes))
    assert (_count(shapes), len(rows)) == (count, leaves)
    assert hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16] == digest
    flat, tree = jax.tree.flatten(shapes)
    params = jax.tree.unflatten(tree, [_fixed(leaf.shape, j) for j, leaf in enumerate(flat)])
    out = np.asarray(jax.jit(lambda p: model.apply({"params": p}, x, t))(params), np.float64)
    np.testing.assert_allclose([np.abs(out).sum(), np.square(out).sum()], stats[1:], rtol=1e-4)
    np.testing.assert_allclose(out.sum(), stats[0], rtol=1e-4, atol=1e-3)


def _latent_unet():
    return UNet(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(7, 4), dropout=0.0, num_heads=2,
                context_dim=6)


def test_text_conditioned_unet_on_7x7_latents_masks_padding():
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 4))
    t = jnp.array([3.0, 50.0])
    context = jax.random.normal(jax.random.key(1), (2, 3, 6))
    mask = jnp.array([[True, True, False], [True, True, True]])
    model = _latent_unet()
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), x, t, context=context, context_mask=mask))
    shapes = shapes["params"]
    assert {"down0_attn0", "down1_attn0", "up0_attn1", "up1_attn1", "mid_attn"} <= set(shapes)
    assert "cross_attn0" in shapes["mid_attn"] and shapes["mid_attn"]["cross_attn0"]["k"]["kernel"].shape == (6, 32)
    params = _perturbed(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), jax.random.key(2))
    apply = jax.jit(lambda c, m: model.apply({"params": params}, x, t, context=c, context_mask=m))
    out = np.asarray(apply(context, mask))
    assert out.shape == x.shape and np.all(np.isfinite(out))
    junk = 4.0 * jax.random.normal(jax.random.key(3), (2, 2, 6))
    padded = apply(jnp.concatenate([context, junk], 1), jnp.concatenate([mask, jnp.zeros((2, 2), bool)], 1))
    np.testing.assert_allclose(padded, out, rtol=1e-4, atol=1e-5)
    assert not np.allclose(apply(context.at[0, 0].set(2.0), mask)[0], out[0])  # real tokens condition
    null = jax.jit(lambda p: model.apply({"params": p}, x, t))(params)  # context None: the null condition
    np.testing.assert_allclose(apply(context, jnp.zeros_like(mask)), null, rtol=1e-4, atol=1e-5)


def test_context_errors_and_odd_size_upsampling():
    x, t = jnp.zeros((1, 8, 8, 3)), jnp.zeros((1,))
    with pytest.raises(ConfigError, match="context_dim 0"):
        jax.eval_shape(lambda: UNet(**unet_config("tiny")).init(jax.random.key(0), x, t, context=jnp.zeros((1, 2, 6))))
    with pytest.raises(ConfigError, match=r"\[B, L, 6\]"):
        jax.eval_shape(lambda: _latent_unet().init(jax.random.key(0), x, t, context=jnp.zeros((1, 2, 5))))
    h = jnp.arange(16.0).reshape(1, 4, 4, 1)
    up = np.asarray(upsample_to(h, jnp.zeros((1, 7, 7, 2))))[0, :, :, 0]
    assert up.shape == (7, 7) and up[6, 6] == 15.0 and up[1, 2] == 1.0  # row 2i, 2i+1 ← input row i
    plain = jax.image.resize(h, (1, 8, 8, 1), "nearest")
    np.testing.assert_array_equal(upsample_to(h, jnp.zeros((1, 8, 8, 1))), plain)  # even sides: no crop
