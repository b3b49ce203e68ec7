"""bfloat16 compute (``model.dtype``) for the conv VAE and the diffusion U-Net: the training step runs, the
parameters stay float32, the arithmetic really is bfloat16 (the result differs from float32's) and agrees
with float32's to bfloat16 precision (8 mantissa bits: relative error ~ 2^-8 per operation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.bench.train import load_bench_config
from gm_jax.core.errors import ConfigError


def _families(name, overrides, dtypes=("float32", "bfloat16")):
    from gm_jax.data.pipeline import make_pipeline
    from gm_jax.train.families import build_family

    out = {}
    for d in dtypes:
        config = load_bench_config(name, list(overrides) + [f"--config.model.dtype={d}"])
        pipeline = make_pipeline(config.data, config.seed, 0, 1)
        out[d] = build_family(config, pipeline.spec)
    return out, pipeline.batch(0)


VAE = ["--config.data.num_examples=32", "--config.data.batch_size=8", "--config.model.channels=(4, 8)",
       "--config.model.latent_dim=4"]


def test_bfloat16_vae_train_step_matches_float32():
    families, batch = _families("vae.py", VAE)
    # the same float32 state for both, filled on the host: compiling the initializers costs far more than the test
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(families["float32"].init, jax.random.key(0), batch)
    fill = lambda s: (jax.random.key(0) if jnp.issubdtype(s.dtype, jax.dtypes.prng_key)
                      else jnp.zeros(s.shape, s.dtype))
    state = jax.tree.map(fill, shapes).replace(params=jax.tree.map(
        lambda s: jnp.asarray(0.2 * rng.standard_normal(s.shape), s.dtype), shapes.params))
    losses, types = {}, {}
    for d, fam in families.items():
        new_state, metrics = jax.jit(fam.train_step)(state, batch, jax.random.key(1))
        losses[d] = float(metrics["loss"])
        types[d] = {p.dtype for p in jax.tree.leaves(new_state.params)}
    f32, bf16 = losses["float32"], losses["bfloat16"]
    assert types["float32"] == types["bfloat16"] == {jnp.dtype(jnp.float32)}
    assert np.isfinite(bf16) and bf16 != f32  # the arithmetic really changed
    assert abs(bf16 - f32) <= 1e-2 * abs(f32), (bf16, f32)


def test_diffusion_family_builds_a_bfloat16_unet():
    from gm_jax.diffusion.family import build_network, model_defaults

    m = model_defaults()
    assert m.dtype == "float32" and build_network(m, None, 10).dtype == jnp.float32
    m.dtype = "bfloat16"
    assert build_network(m, None, 10).dtype == jnp.bfloat16
    del m["dtype"]  # a run config saved before the field existed
    assert build_network(m, None, 10).dtype == jnp.float32


def test_unet_computes_in_bfloat16_and_returns_float32():
    from gm_jax.nn.unet import UNet

    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
    t, lab = jnp.array([3.0, 500.0]), jnp.array([1, 10])
    # one level (residual blocks, the middle attention, GroupNorm, convolutions, embeddings) keeps compiling cheap
    f32, bf16 = (UNet(ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), dropout=0.0, num_classes=10,
                      dtype=d) for d in (jnp.float32, jnp.bfloat16))

    # float32 parameters drawn on the host (no RNG to compile), every weight non-zero (conv_out starts at zero)
    shapes = jax.eval_shape(lambda: f32.init(jax.random.key(1), x, t, lab))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), jnp.float32), shapes)
    out32, out16 = jax.jit(lambda p: (f32.apply(p, x, t, lab), bf16.apply(p, x, t, lab)))(params)
    assert out16.dtype == jnp.float32
    err = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert 1e-4 < err < 5e-2, err
    jaxpr = str(jax.make_jaxpr(lambda p: bf16.apply(p, x, t, lab))(params))
    assert "conv_general_dilated" in jaxpr and "bf16" in jaxpr


def test_unknown_dtype_is_a_config_error():
    with pytest.raises(ConfigError, match="model.dtype"):
        _families("vae.py", VAE, ("float16",))
