"""Flow-matching family: a short 2-D run lowers the loss and learns the target; images; bad config."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gm_jax.core import ConfigError, DataSpec
from gm_jax.flow_matching import make_family, model_defaults


def _config(**model):
    cfg = ml_collections.ConfigDict()
    cfg.model = model_defaults()
    cfg.model.update(model)
    cfg.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=3e-3, ema_decay=0.0))
    return cfg


def test_toy_training_lowers_loss_and_matches_target():
    spec = DataSpec(shape=(2,), value_range=(-4.0, 4.0))
    fam = make_family(_config(hidden=64, num_layers=2, coupling="ot", num_steps=20), spec)
    mean = jnp.array([2.0, -1.0])
    data = lambda k: mean + 0.5 * jax.random.normal(k, (128, 2))
    key = jax.random.key(0)
    state = fam.init(key, {"x": data(key)})
    step = jax.jit(fam.train_step)
    losses = []
    for i in range(200):
        k = jax.random.fold_in(key, i)
        state, metrics = step(state, {"x": data(k)}, k)
        losses.append(float(metrics["loss"]))
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    samples, info = fam.sample(state.params, jax.random.key(1), 1000)
    assert int(info["nfe"]) == 40  # Heun, 20 steps, 2 evaluations each
    np.testing.assert_allclose(np.mean(np.asarray(samples), axis=0), mean, atol=0.15)
    np.testing.assert_allclose(np.std(np.asarray(samples), axis=0), 0.5, atol=0.15)
    _, info_euler = fam.sample(state.params, jax.random.key(1), 1000, sampler="euler", steps=7)
    assert int(info_euler["nfe"]) == 7
    # Likelihood by the ODE: close to the true NLL of N(mean, 0.25 I) (its entropy on average).
    held_out = fam.evaluate(state.params, {"x": data(jax.random.key(9))}, jax.random.key(2))
    true_nll = float(np.mean(-(-0.5 * np.sum((np.asarray(data(jax.random.key(9))) - np.asarray(mean)) ** 2
                                            / 0.25, axis=1) - np.log(2 * np.pi * 0.25))))
    assert abs(float(held_out["nll"]) - true_nll) < 0.3, (float(held_out["nll"]), true_nll)


def test_vp_path_and_image_family_train_and_sample():
    spec = DataSpec(shape=(8, 8, 1), value_range=(-1.0, 1.0), levels=256)
    fam = make_family(_config(path="vp", solver="euler", num_steps=2,
                              unet_overrides={"ch": 8, "ch_mult": (1,), "attn_resolutions": ()}), spec)
    x = -1.0 + 2.0 * jax.random.randint(jax.random.key(0), (4, 8, 8, 1), 0, 256) / 255.0
    state = fam.init(jax.random.key(1), {"x": x})
    state, metrics = jax.jit(fam.train_step)(state, {"x": x}, jax.random.key(2))
    assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
    images, info = fam.sample(state.params, jax.random.key(3), 2)
    assert images.shape == (2, 8, 8, 1) and int(info["nfe"]) == 2


def test_evaluate_discrete_data_units():
    # 8-bit data: the likelihood is of the dequantized data plus D log(levels / (hi - lo)) nats.
    spec = DataSpec(shape=(2,), value_range=(-1.0, 1.0), levels=256)
    fam = make_family(_config(hidden=8, num_layers=1, eval_divergence="hutchinson"), spec)
    x = -1.0 + 2.0 * jax.random.randint(jax.random.key(0), (16, 2), 0, 256) / 255.0
    state = fam.init(jax.random.key(1), {"x": x})
    out = fam.evaluate(state.params, {"x": x}, jax.random.key(4))
    np.testing.assert_allclose(out["bits_per_dim"], out["nll"] / (2 * np.log(2.0)), rtol=1e-5)
    # Uniform 8-bit data has an entropy of 8 bits/dim, a lower bound on any model's expected NLL; an
    # untrained (near-identity) flow of N(0, I) costs about 0.5 log(2 pi e / 3) / ln 2 ~= 0.6 bits more.
    assert 7.5 < float(out["bits_per_dim"]) < 10.0


def test_bad_config_errors():
    spec = DataSpec(shape=(2,))
    for field, value in [("path", "cosine"), ("coupling", "sinkhorn"), ("solver", "rk4")]:
        with pytest.raises(ConfigError, match=f"unknown model.{field}"):
            make_family(_config(**{field: value}), spec)
    fam = make_family(_config(hidden=8, num_layers=1), spec)
    state = fam.init(jax.random.key(0), {"x": jnp.zeros((4, 2))})
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        fam.sample(state.params, jax.random.key(0), 4, steps=0)
    with pytest.raises(ConfigError, match="--sampler must be one of"):
        fam.sample(state.params, jax.random.key(0), 4, sampler="rk4")
    assert [(o.name, o.default) for o in fam.sample_options] == [
        ("sampler", "heun"), ("steps", 50), ("rtol", 1e-5), ("atol", 1e-5)] and fam.conditioning == ()
    with pytest.raises(ConfigError, match="does not take --temperature"):
        fam.check_sample_options({"temperature": 1.0})
    with pytest.raises(ConfigError, match="example shape"):
        fam.train_step(state, {"x": jnp.zeros((4, 3))}, jax.random.key(0))
