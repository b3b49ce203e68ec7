"""Cross-attention and the SpatialTransformer: the context mask (appended padding changes nothing, a fully
masked context gives exactly 0 / the null condition), dependence on real context tokens, GEGLU's formula
and the zero-initialized output projection."""

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.nn.cross_attention import GEGLU, CrossAttention, SpatialTransformer


def _perturbed(params, key):
    leaves, tree = jax.tree.flatten(params)
    rs = np.random.RandomState(int(jax.random.randint(key, (), 0, 2**30)))  # numpy draws: no JAX compile per shape
    noisy = [p + jnp.asarray(0.1 * rs.standard_normal(p.shape), p.dtype) for p in leaves]
    return jax.tree.unflatten(tree, noisy)


def _context(key, batch=2, length=3, dim=6):
    context = jax.random.normal(key, (batch, length, dim))
    mask = jnp.array([[True, True, False], [True, True, True]])[:batch, :length]
    return context, mask


def _pad(context, mask, extra, key):
    junk = 5.0 * jax.random.normal(key, (context.shape[0], extra, context.shape[2]))
    return jnp.concatenate([context, junk], axis=1), jnp.concatenate([mask, jnp.zeros((mask.shape[0], extra), bool)], 1)


def test_cross_attention_masks_context_padding():
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    context, mask = _context(jax.random.key(1))
    attn = CrossAttention(num_heads=2)
    params = jax.jit(attn.init)(jax.random.key(2), x, context, mask)  # jitted: eager linen compiles op by op
    apply = jax.jit(attn.apply)
    out = apply(params, x, context, mask)
    assert out.shape == x.shape
    padded = apply(params, x, *_pad(context, mask, 4, jax.random.key(3)))
    np.testing.assert_allclose(padded, out, rtol=1e-5, atol=1e-5)
    changed_pad = apply(params, x, context.at[0, 2].set(9.0), mask)  # token 2 of example 0 is padding
    np.testing.assert_allclose(changed_pad, out, rtol=1e-5, atol=1e-5)
    changed_real = apply(params, x, context.at[0, 1].set(9.0), mask)
    assert not np.allclose(changed_real[0], out[0])


def test_fully_masked_context_gives_zero_attention_output():
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    context, _ = _context(jax.random.key(1))
    attn = CrossAttention(num_heads=2)
    params = jax.jit(attn.init)(jax.random.key(2), x, context)
    out = jax.jit(attn.apply)(params, x, context, jnp.zeros((2, 3), bool))
    bias = params["params"]["out"]["bias"]  # W_o · 0 + b
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, jnp.broadcast_to(bias, out.shape), atol=1e-6)


def test_geglu_formula():
    x = jax.random.normal(jax.random.key(0), (3, 4))
    ff = GEGLU(mult=2)
    p = ff.init(jax.random.key(1), x)["params"]
    hidden = np.asarray(x) @ np.asarray(p["proj_in"]["kernel"]) + np.asarray(p["proj_in"]["bias"])
    a, g = hidden[:, :8], hidden[:, 8:]
    gelu = np.asarray(jax.nn.gelu(jnp.asarray(g)))
    expected = (a * gelu) @ np.asarray(p["proj_out"]["kernel"]) + np.asarray(p["proj_out"]["bias"])
    np.testing.assert_allclose(ff.apply({"params": p}, x), expected, rtol=1e-5, atol=1e-5)


def test_spatial_transformer_identity_at_init_mask_and_null_context():
    x = jax.random.normal(jax.random.key(0), (2, 3, 3, 8))
    context, mask = _context(jax.random.key(1))
    block = SpatialTransformer(num_heads=2, depth=2, context_dim=6)
    params = jax.jit(block.init)(jax.random.key(2), x, context, mask)["params"]  # jitted: eager compiles op by op
    assert {"self_attn1", "cross_attn1", "ff1", "proj_out"} <= set(params)
    run = jax.jit(lambda p, c, m: block.apply({"params": p}, x, c, m))
    np.testing.assert_allclose(run(params, context, mask), x)  # zero-init proj_out
    params = _perturbed(params, jax.random.key(3))
    apply = lambda c, m: run(params, c, m)
    out = apply(context, mask)
    assert out.shape == x.shape and not np.allclose(out, x)
    np.testing.assert_allclose(apply(*_pad(context, mask, 2, jax.random.key(4))), out, rtol=1e-5, atol=1e-5)
    assert not np.allclose(apply(context.at[1, 0].set(3.0), mask)[1], out[1])
    null = jax.jit(lambda p: block.apply({"params": p}, x, None))(params)
    np.testing.assert_allclose(apply(context, jnp.zeros_like(mask)), null, rtol=1e-5, atol=1e-5)
