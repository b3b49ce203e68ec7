"""U-Net: the DDPM CIFAR-10 size (35.7M parameters, by eval_shape only), tiny forward passes with and
without attention and labels, the time embedding and attention's permutation equivariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.nn import SelfAttention2D, UNet, sinusoidal_embedding, unet_config


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
    keys = jax.random.split(key, len(leaves))
    noisy = [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, noisy)


@pytest.mark.parametrize("attn,classes", [((), 0), ((8,), 5)])
def test_tiny_unet_forward_with_and_without_attention_and_labels(attn, classes):
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    t = jnp.array([3.0, 50.0])
    model = UNet(**unet_config("tiny", attn_resolutions=attn, num_classes=classes))
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
