"""MiniCLIP: the symmetric InfoNCE loss against a numpy hand computation, its ordering (aligned < shuffled)
and the sign of its gradient in the logit scale, CLIPScore's hand value, zero-shot logits, the temperature's
initialization and clip at 100, and normalized, padding-invariant embeddings."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.nn.clip import MiniCLIP, clip_loss, clip_score, l2_normalize, zero_shot_logits


def _log_softmax_rows(a):
    a = a - a.max(axis=1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=1, keepdims=True))


def test_clip_loss_matches_hand_computation_on_3x3():
    img = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    txt = np.array([[0.8, 0.6], [0.0, 1.0], [0.6, -0.8]])
    scale = 2.5
    logits = scale * img @ txt.T
    expected = -0.5 * (np.mean(np.diag(_log_softmax_rows(logits))) + np.mean(np.diag(_log_softmax_rows(logits.T))))
    np.testing.assert_allclose(clip_loss(jnp.asarray(img), jnp.asarray(txt), scale), expected, rtol=1e-6)
    # the two directions differ here (the similarity matrix is not symmetric), so both terms are exercised
    assert not np.isclose(np.mean(np.diag(_log_softmax_rows(logits))), np.mean(np.diag(_log_softmax_rows(logits.T))))


def test_clip_loss_prefers_aligned_pairs_and_scale_gradient_sign():
    emb = l2_normalize(jax.random.normal(jax.random.key(0), (6, 8)))
    text = l2_normalize(emb + 0.1 * jax.random.normal(jax.random.key(1), (6, 8)))
    shuffled = text[jnp.array([1, 2, 3, 4, 5, 0])]
    aligned_loss, shuffled_loss = clip_loss(emb, text, 10.0), clip_loss(emb, shuffled, 10.0)
    assert aligned_loss < shuffled_loss
    grad = jax.grad(lambda s, t: clip_loss(emb, t, s))
    assert grad(10.0, text) < 0  # sharper logits help when the pairs match
    assert grad(10.0, shuffled) > 0  # and hurt when they do not
    np.testing.assert_allclose(clip_loss(emb, text, 0.0), math.log(6), rtol=1e-6)  # uniform logits: log N


def test_clip_score_hand_value_and_zero_shot_logits():
    img = jnp.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    txt = jnp.array([[2.0, 0.0], [0.0, -1.0], [1.0, 0.0]])  # cos = 1, -1/√2 (clipped to 0), 0.6
    np.testing.assert_allclose(clip_score(img, txt), (100.0 + 0.0 + 60.0) / 3, rtol=1e-6)
    classes = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    logits = zero_shot_logits(img, classes, 10.0)
    np.testing.assert_allclose(logits, 10.0 * np.array([[1, 0], [0.5**0.5, 0.5**0.5], [0.6, 0.8]]), rtol=1e-6)
    assert np.argmax(logits, axis=1).tolist() == [0, 0, 1]


def test_mini_clip_embeddings_temperature_and_padding():
    model = MiniCLIP(vocab_size=12, max_len=8, embed_dim=8, width=16, depth=1, num_heads=2, image_channels=(8, 16))
    images = jax.random.normal(jax.random.key(0), (2, 12, 12, 1))
    tokens = jnp.array([[1, 2, 3, 0], [4, 5, 6, 7]])
    mask = jnp.array([[True, True, True, False], [True] * 4])
    # every call jitted: eager linen modules compile each primitive op by op (several times slower on a CPU)
    variables = jax.jit(model.init)(jax.random.key(1), images, tokens, mask)
    apply = jax.jit(model.apply, static_argnames="method")
    img_emb, txt_emb, scale = apply(variables, images, tokens, mask)
    assert img_emb.shape == txt_emb.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(img_emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt_emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(scale, 1 / 0.07, rtol=1e-5)
    np.testing.assert_allclose(apply(variables, images, method="encode_image"), img_emb, rtol=1e-5)
    longer, longer_mask = jnp.pad(tokens, ((0, 0), (0, 3)), constant_values=9), jnp.pad(mask, ((0, 0), (0, 3)))
    padded = apply(variables, longer, longer_mask, method="encode_text")
    np.testing.assert_allclose(padded, txt_emb, rtol=1e-5, atol=1e-6)
    hot = {"params": {**variables["params"], "log_inv_temperature": jnp.asarray(10.0)}}
    np.testing.assert_allclose(apply(hot, method="logit_scale"), 100.0, rtol=1e-6)  # clipped at 100
    loss = lambda p: clip_loss(*model.apply(p, images, tokens, mask))
    grads = jax.jit(jax.grad(loss))(variables)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["params"]["log_inv_temperature"])) > 0
