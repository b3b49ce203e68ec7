"""Flow family: maximum-likelihood training lowers the NLL; evaluation units and bad config."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gm_jax.core import ConfigError, DataSpec
from gm_jax.flows import make_family, model_defaults
from gm_jax.metrics.likelihood import nats_to_bits_per_dim


def _config(**model):
    cfg = ml_collections.ConfigDict()
    cfg.model = model_defaults()
    cfg.model.update(model)
    cfg.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=3e-3, ema_decay=0.0))
    return cfg


def test_toy_training_lowers_nll_and_fits_gaussian():
    spec = DataSpec(shape=(2,), value_range=(-4.0, 4.0))
    fam = make_family(_config(num_layers=4, hidden=32), spec)
    key = jax.random.key(0)
    scale = jnp.array([[1.0, 0.0], [0.9, 0.3]])
    data = lambda k: jax.random.normal(k, (256, 2)) @ scale.T + jnp.array([1.0, -1.0])
    state = fam.init(key, {"x": data(key)})
    step = jax.jit(fam.train_step)
    losses = []
    for i in range(150):
        k = jax.random.fold_in(key, i)
        state, metrics = step(state, {"x": data(k)}, k)
        losses.append(float(metrics["loss"]))
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.2
    # The true NLL of N(mu, A A^T) is a lower bound the fit approaches.
    cov = np.asarray(scale @ scale.T, np.float64)
    true_nll = 0.5 * (2 * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1] + 2)
    held_out = fam.evaluate(state.params, {"x": data(jax.random.key(99))}, jax.random.key(5))
    assert true_nll - 0.1 < float(held_out["nll"]) < true_nll + 0.3, (float(held_out["nll"]), true_nll)
    samples, info = fam.sample(state.params, jax.random.key(3), 2000, temperature=jnp.float32(1.0))
    np.testing.assert_allclose(np.cov(np.asarray(samples).T), cov, atol=0.2)
    cold, _ = fam.sample(state.params, jax.random.key(3), 2000, temperature=jnp.float32(0.1))
    assert np.var(np.asarray(cold), axis=0).max() < 0.1 * np.var(np.asarray(samples), axis=0).min()


def test_image_family_bits_per_dim_units():
    spec = DataSpec(shape=(4, 4, 1), value_range=(-1.0, 1.0), levels=256)
    fam = make_family(_config(kind="glow", num_scales=1, steps_per_scale=1, image_hidden=8), spec)
    k = jax.random.randint(jax.random.key(0), (8, 4, 4, 1), 0, 256)
    x = -1.0 + 2.0 * k / 255.0
    state = fam.init(jax.random.key(1), {"x": x})
    state, metrics = jax.jit(fam.train_step)(state, {"x": x}, jax.random.key(2))
    assert {"loss", "nll", "bits_per_dim"} <= set(metrics)
    out = fam.evaluate(state.params, {"x": x}, jax.random.key(3))
    np.testing.assert_allclose(out["bits_per_dim"], nats_to_bits_per_dim(out["nll"], 16), rtol=1e-5)
    # Uniform 8-bit noise has an entropy of 8 bits/dim, a lower bound on any model's expected NLL; a
    # near-identity flow (actnorm-standardized Gaussian) costs a modest amount more.
    assert 8.0 - 1e-3 < float(out["bits_per_dim"]) < 12.0
    images, info = fam.sample(state.params, jax.random.key(4), 3)
    assert images.shape == (3, 4, 4, 1) and info["nfe"] == 1
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0


def test_bad_config_errors():
    spec = DataSpec(shape=(2,))
    with pytest.raises(ConfigError, match="unknown model.kind"):
        make_family(_config(kind="maf"), spec)
    with pytest.raises(ConfigError, match="binary"):
        make_family(_config(), DataSpec(shape=(4, 4, 1), binary=True, value_range=(0.0, 1.0)))
    fam = make_family(_config(num_layers=2), spec)
    with pytest.raises(ConfigError, match="example shape"):
        fam.init(jax.random.key(0), {"x": jnp.zeros((4, 3))})
    assert [(o.name, o.default) for o in fam.sample_options] == [("temperature", 1.0)] and fam.conditioning == ()
    with pytest.raises(ConfigError, match="--temperature must be > 0"):
        fam.check_sample_options({"temperature": 0.0})
    state = fam.init(jax.random.key(0), {"x": jnp.zeros((4, 2))})
    with pytest.raises(ConfigError, match="--temperature must be > 0"):
        fam.sample(state.params, jax.random.key(0), 2, temperature=-1.0)
