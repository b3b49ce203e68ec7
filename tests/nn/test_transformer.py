"""Masked multi-head attention against a numpy reference, fully masked rows, masked mean pooling and the
text transformer's invariance to appended padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.nn.transformer import TextTransformer, masked_mean, multi_head_attention, split_heads


def _reference_attention(q, k, v, mask):
    """softmax(q kᵀ/√d) v per batch and head in float64, masked keys excluded; all-masked rows give 0."""
    b, lq, h, d = q.shape
    out = np.zeros((b, lq, h, d))
    for i in range(b):
        keep = np.flatnonzero(mask[i])
        if keep.size == 0:
            continue
        for j in range(h):
            logits = q[i, :, j] @ k[i, keep, j].T / np.sqrt(d)
            w = np.exp(logits - logits.max(axis=1, keepdims=True))
            out[i, :, j] = (w / w.sum(axis=1, keepdims=True)) @ v[i, keep, j]
    return out


def test_multi_head_attention_matches_numpy_reference_with_mask():
    rng = np.random.RandomState(0)
    q, k, v = rng.randn(2, 3, 2, 4), rng.randn(2, 5, 2, 4), rng.randn(2, 5, 2, 4)
    mask = np.array([[True, True, False, True, False], [True, False, False, False, False]])
    out = multi_head_attention(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)), jnp.asarray(mask))
    np.testing.assert_allclose(out, _reference_attention(q, k, v, mask), rtol=1e-5, atol=1e-5)
    unmasked = multi_head_attention(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)))
    np.testing.assert_allclose(unmasked, _reference_attention(q, k, v, np.ones((2, 5), bool)), rtol=1e-5,
                               atol=1e-5)


def test_fully_masked_row_gives_zeros_and_finite_gradients():
    rng = np.random.RandomState(1)
    q, k, v = (jnp.asarray(rng.randn(2, 3, 1, 4), jnp.float32) for _ in range(3))
    mask = jnp.array([[False, False, False], [True, False, True]])
    out = multi_head_attention(q, k, v, mask)
    assert np.all(np.isfinite(out)) and np.all(np.asarray(out[0]) == 0.0)
    grads = jax.grad(lambda q, k, v: jnp.sum(multi_head_attention(q, k, v, mask) ** 2), argnums=(0, 1, 2))(q, k, v)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_masked_mean_and_split_heads():
    x = jnp.arange(12.0).reshape(2, 3, 2)
    mask = jnp.array([[True, False, True], [False, False, False]])
    np.testing.assert_allclose(masked_mean(x, mask), [[2.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(masked_mean(x, None), x.mean(axis=1))
    assert split_heads(jnp.zeros((1, 2, 6)), 3).shape == (1, 2, 3, 2)
    with pytest.raises(ConfigError, match="num_heads"):
        split_heads(jnp.zeros((1, 2, 6)), 4)


def test_text_transformer_outputs_unchanged_by_appended_padding():
    model = TextTransformer(vocab_size=11, max_len=8, width=16, depth=2, num_heads=2)
    tokens = jnp.array([[3, 5, 7, 0, 0], [1, 2, 3, 4, 9]])
    mask = jnp.array([[True, True, True, False, False], [True] * 5])
    params = jax.jit(model.init)(jax.random.key(0), tokens, mask)  # jitted: eager linen compiles op by op
    apply = jax.jit(model.apply)
    feats, pooled = apply(params, tokens, mask)
    assert feats.shape == (2, 5, 16) and pooled.shape == (2, 16)
    longer = jnp.concatenate([tokens, jnp.array([[4, 6, 8], [10, 1, 2]])], axis=1)  # padding of any id
    longer_mask = jnp.concatenate([mask, jnp.zeros((2, 3), bool)], axis=1)
    feats2, pooled2 = apply(params, longer, longer_mask)
    np.testing.assert_allclose(pooled2, pooled, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats2[0, :3], feats[0, :3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats2[1, :5], feats[1, :5], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled[0], feats[0, :3].mean(axis=0), rtol=1e-5, atol=1e-6)  # mean of real tokens
    other = apply(params, tokens.at[0, 1].set(6), mask)[1]
    assert not np.allclose(other[0], pooled[0]) and np.allclose(other[1], pooled[1])  # real tokens matter
    with pytest.raises(ConfigError, match="max_len"):
        jax.eval_shape(model.apply, params, jnp.zeros((1, 9), jnp.int32))
