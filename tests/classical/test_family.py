import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.classical import mixtures, rbm
from gm_jax.classical.family import make_family, model_defaults
from gm_jax.core.errors import ConfigError
from gm_jax.core.family import DataSpec
from gm_jax.train.config import base_config


def _config(family: str, optim=None, **changes):
    config = base_config()
    config.model = model_defaults()
    config.model.family = family
    config.model.update(changes)
    config.optim.update(optim or {})
    return config


def _binary_images(n: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    protos = (rng.random((2, 2, 3, 1)) < 0.5).astype(np.float32)
    x = protos[rng.integers(0, 2, n)]
    return np.where(rng.random(x.shape) < 0.05, 1 - x, x).astype(np.float32)


BINARY_SPEC = DataSpec(shape=(2, 3, 1), value_range=(0.0, 1.0), binary=True)


def test_gmm_family_runs_em_on_each_batch():
    spec = DataSpec(shape=(2,))
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2, 0.5, (40, 2)), rng.normal(2, 0.5, (40, 2))]).astype(np.float32)
    fam = make_family(_config("gmm", num_components=2, covariance_type="full", reg_covar=1e-6), spec)
    state = fam.init(jax.random.key(0), {"x": x})
    step = jax.jit(fam.train_step)
    losses = []
    for i in range(5):
        state, m = step(state, {"x": x}, jax.random.key(i))
        losses.append(float(m["loss"]))
    assert int(state.step) == 5
    assert np.all(np.diff(losses) <= 1e-5)
    nll = fam.evaluate(state.params, {"x": x}, jax.random.key(0))["nll"]
    direct = -float(jnp.mean(mixtures.gmm_log_density(state.params, x, "full")))
    np.testing.assert_allclose(float(nll), direct, rtol=1e-6)
    samples, info = fam.sample(state.params, jax.random.key(1), 7)
    assert samples.shape == (7, 2) and info == {}
    assert fam.sample_options == () and fam.conditioning == ()
    with pytest.raises(ConfigError, match="does not take --steps"):
        fam.check_sample_options({"steps": 3})


def test_bernoulli_mixture_family_and_binary_checks():
    x = _binary_images()
    fam = make_family(_config("bernoulli_mixture", num_components=2), BINARY_SPEC)
    state = fam.init(jax.random.key(0), {"x": x})
    state, m = jax.jit(fam.train_step)(state, {"x": x}, jax.random.key(1))
    assert int(state.step) == 1 and np.isfinite(float(m["loss"]))
    samples, _ = fam.sample(state.params, jax.random.key(2), 5)
    assert samples.shape == (5, 2, 3, 1) and set(np.unique(np.asarray(samples))) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="binary"):
        fam.init(jax.random.key(0), {"x": x * 0.5})
    with pytest.raises(ConfigError, match="binary"):
        make_family(_config("rbm"), DataSpec(shape=(3, 3, 1)))
    with pytest.raises(ConfigError, match="model.family"):
        make_family(_config("hopfield"), BINARY_SPEC)
    with pytest.raises(ConfigError, match="example shape"):
        fam.init(jax.random.key(0), {"x": x[:, :1]})


def test_rbm_family_trains_and_ais_nll_matches_exact():
    x = _binary_images()
    # AIS sizes as in test_rbm.py (6 visible, 4 hidden, 256 chains, 400 betas) reuse its compiled program
    fam = make_family(_config("rbm", num_hidden=4, num_chains=8, ais_chains=256, ais_betas=400,
                              sample_steps=20,
                              optim={"name": "sgd", "learning_rate": 0.1, "momentum": 0.5}), BINARY_SPEC)
    state = fam.init(jax.random.key(0), {"x": x})
    chains0 = np.asarray(state.extra)
    step = jax.jit(fam.train_step)
    for i in range(20):
        state, m = step(state, {"x": x}, jax.random.key(i))
    assert int(state.step) == 20
    assert not np.array_equal(np.asarray(state.extra), chains0)
    flat = jnp.asarray(x.reshape(len(x), -1))
    exact = float(rbm.negative_log_likelihood(state.params, flat, rbm.exact_log_partition(state.params)))
    out = fam.evaluate(state.params, {"x": x}, jax.random.key(3))
    assert abs(float(out["nll"]) - exact) < 4 * float(out["log_z_stderr"]) + 1e-3
    samples, _ = fam.sample(state.params, jax.random.key(4), 6)
    assert samples.shape == (6, 2, 3, 1)
    assert [(o.name, o.default) for o in fam.sample_options] == [("steps", 20)] and fam.conditioning == ()
    one, _ = fam.sample(state.params, jax.random.key(4), 6, steps=1)
    direct = rbm.sample_rbm(state.params, jax.random.key(4), 6, 1)[0]
    np.testing.assert_array_equal(np.asarray(one).reshape(6, -1), np.asarray(direct))
    with pytest.raises(ConfigError, match="--steps must be >= 1"):
        fam.sample(state.params, jax.random.key(4), 6, steps=0)
    with pytest.raises(ConfigError, match="does not take --temperature"):
        fam.check_sample_options({"temperature": 1.0})


def test_rbm_step_size_comes_from_config_optim():
    """SGD without momentum: the first update is ``optim.learning_rate`` times the CD-1 direction
    ``cd_gradient - weight_decay W`` with the negatives drawn from the step's key."""
    x = _binary_images(16)
    lr, wd = 0.07, 0.01
    fam = make_family(_config("rbm", num_hidden=3, num_chains=4, persistent=False, weight_decay=wd,
                              optim={"name": "sgd", "learning_rate": lr, "momentum": 0.0}), BINARY_SPEC)
    state = fam.init(jax.random.key(0), {"x": x})
    new, _ = jax.jit(fam.train_step)(state, {"x": x}, jax.random.key(1))
    flat = jnp.asarray(x.reshape(len(x), -1))
    v_model, _ = rbm.gibbs_chain(state.params, jax.random.key(1), flat, 1)
    g = rbm.cd_gradient(state.params, flat, v_model)
    g["w"] = g["w"] - wd * state.params["w"]
    for k in ("w", "b", "c"):
        delta = np.asarray(new.params[k]) - np.asarray(state.params[k])
        assert np.abs(delta).max() > 0
        np.testing.assert_allclose(delta, lr * np.asarray(g[k]), rtol=1e-4, atol=1e-7)
    with pytest.raises(ConfigError, match="learning_rate"):
        make_family(_config("rbm", optim={"learning_rate": 0.0}), BINARY_SPEC)
