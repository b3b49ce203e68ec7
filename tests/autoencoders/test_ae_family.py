"""The autoencoder/VAE family: protocol, training reduces the loss, sampling, evaluation, config errors."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gm_jax.autoencoders import losses
from gm_jax.autoencoders.family import SAMPLE_OPTIONS, make_family, model_defaults
from gm_jax.core import ConfigError, DataSpec, TrainState
from tests.autoencoders import linear_gaussian_toy as toy

BINARY = DataSpec(shape=(8, 8, 1), value_range=(0.0, 1.0), binary=True, name="tiny_binary")
GREY = DataSpec(shape=(8, 8, 1), value_range=(-1.0, 1.0), levels=256, name="tiny_grey")


def make_config(**model):
    cfg = ml_collections.ConfigDict()
    cfg.model = model_defaults()
    cfg.model.update(dict(hidden=(32,), channels=(8,), latent_dim=4, eval_iwae_k=16, iwae_chunk=8))
    cfg.model.update(model)
    cfg.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-2, ema_decay=0.9))
    return cfg


def batch_for(spec, seed=0):
    rng = np.random.default_rng(seed)
    # Two prototypes plus noise: structure a tiny model can learn in a few dozen steps.
    protos = rng.random((2,) + spec.shape) > 0.5
    x = protos[rng.integers(0, 2, 8)] ^ (rng.random((8,) + spec.shape) < 0.05)
    if spec.binary:
        return {"x": jnp.asarray(x, jnp.float32)}
    levels = np.round(x * 200 + rng.integers(0, 50, x.shape))
    return {"x": jnp.asarray(levels / 255.0 * 2 - 1, jnp.float32)}


def train(family, batch, steps):
    state = jax.jit(family.init)(jax.random.key(0), batch)
    step = jax.jit(family.train_step)
    losses_seen = []
    for i in range(steps):
        state, metrics = step(state, batch, jax.random.key(100 + i))
        losses_seen.append(float(metrics["loss"]))
    return state, metrics, np.array(losses_seen)


@pytest.mark.parametrize("arch,spec", [("mlp", BINARY), ("conv", GREY)])
def test_vae_trains_samples_and_evaluates(arch, spec):
    cfg = make_config(arch=arch, decoder="bernoulli" if spec.binary else "gaussian")
    family = make_family(cfg, spec)
    batch = batch_for(spec)
    state, metrics, seen = train(family, batch, 30)
    assert isinstance(state, TrainState) and int(state.step) == 30 and state.ema_params is not None
    assert set(metrics) >= {"loss", "elbo", "kl", "recon"}
    assert float(metrics["elbo"]) == pytest.approx(-(float(metrics["recon"]) + float(metrics["kl"])), rel=1e-5)
    assert seen[-5:].mean() < seen[:5].mean() - 0.1 * abs(seen[:5].mean())

    x, info = family.sample(state.params, jax.random.key(1), 5)
    assert x.shape == (5,) + spec.shape and info == {"nfe": 1}
    assert float(x.min()) >= spec.value_range[0] and float(x.max()) <= spec.value_range[1]
    if spec.binary:  # draws from the Bernoulli decoder are binary
        x, _ = family.sample(state.params, jax.random.key(1), 64, temperature=0.5, decoder_mean=False)
        assert set(np.unique(np.asarray(x)).tolist()) == {0.0, 1.0}

    ev = family.evaluate(state.params, batch, jax.random.key(2))
    assert float(ev["nll_iwae"]) <= -float(ev["elbo"]) + 1e-4
    assert float(ev["recon"]) == pytest.approx(-(float(ev["elbo"]) + float(ev["kl"])), rel=1e-5)
    d = math.prod(spec.shape)
    nll = float(ev["nll_iwae"])
    expected_bpd = nll / (d * math.log(2)) + (0.0 if spec.binary else math.log2(128))
    assert float(ev["bits_per_dim"]) == pytest.approx(expected_bpd, rel=1e-4)


def test_learned_variance_is_a_parameter_and_fixed_is_not():
    learned = jax.eval_shape(make_family(make_config(decoder="gaussian"), GREY).init, jax.random.key(0),
                             batch_for(GREY))
    fixed = jax.eval_shape(make_family(make_config(decoder="gaussian", gaussian_variance="fixed"), GREY).init,
                           jax.random.key(0), batch_for(GREY))
    assert "raw_logvar" in learned.params and "raw_logvar" not in fixed.params


@pytest.mark.parametrize("model", [
    dict(kind="vanilla"),
    dict(kind="denoising", corruption="masking"),
    dict(kind="denoising", corruption="gaussian", decoder="gaussian"),
    dict(kind="sparse", sparsity_penalty="kl", sparsity_weight=0.1),
])
def test_autoencoders_reduce_loss(model):
    spec = GREY if model.get("decoder") == "gaussian" else BINARY
    family = make_family(make_config(family="autoencoder", **model), spec)
    batch = batch_for(spec)
    state, metrics, seen = train(family, batch, 20)
    assert family.sample is None and family.name == "autoencoder"
    assert seen[-5:].mean() < 0.9 * seen[:5].mean()
    ev = family.evaluate(state.params, batch, jax.random.key(0))
    assert float(ev["mse"]) >= 0 and np.isfinite(float(ev["recon"]))


def test_iwae_estimates_chunked_match_direct_and_exact_marginal():
    def apply(key, x, n):
        return losses.importance_log_weights(key, x, toy.encode_off, toy.log_likelihood, n)

    x = jnp.asarray(toy.sample_x(4, seed=3))
    key = jax.random.key(0)

    @jax.jit
    def run(x, key):
        direct = jnp.concatenate([apply(jax.random.fold_in(key, j), x, 4) for j in range(3)])
        return losses.iwae_estimates(apply, key, x, 12, 4), direct

    (bound_k, mean_log_w), direct = run(x, key)
    np.testing.assert_allclose(bound_k, jax.scipy.special.logsumexp(direct, axis=0) - math.log(12), rtol=1e-5)
    np.testing.assert_allclose(mean_log_w, jnp.mean(direct, axis=0), rtol=1e-5)
    assert np.all(np.asarray(bound_k) >= np.asarray(mean_log_w) - 1e-5)  # Jensen

    def exact(key, x, n):
        return losses.importance_log_weights(key, x, toy.encode_exact, toy.log_likelihood, n)

    big = jax.jit(lambda x, key: losses.iwae_estimates(exact, key, x, 2000, 250)[0])(x, key)
    np.testing.assert_allclose(big, toy.log_marginal(np.asarray(x, np.float64)), rtol=1e-4, atol=1e-4)


def test_vae_declares_its_sample_options_and_checks_them():
    vae = make_family(make_config(), BINARY)
    assert vae.sample_options == SAMPLE_OPTIONS and vae.conditioning == ()
    assert {o.name for o in SAMPLE_OPTIONS} == {"temperature", "decoder_mean"}
    with pytest.raises(ConfigError, match="temperature"):
        vae.check_sample_options({"temperature": 0.0})
    with pytest.raises(ConfigError, match="does not take --steps"):
        vae.check_sample_options({"steps": 3})
    state = jax.jit(vae.init)(jax.random.key(0), batch_for(BINARY))
    with pytest.raises(ConfigError, match="temperature"):
        vae.sample(state.params, jax.random.key(1), 2, temperature=-1.0)
    assert make_family(make_config(family="autoencoder"), BINARY).sample_options == ()


@pytest.mark.parametrize("model,spec,match", [
    (dict(decoder="bernoulli"), GREY, "bernoulli"),
    (dict(arch="resnet"), BINARY, "model.arch"),
    (dict(family="autoencoder", kind="contractive"), BINARY, "model.kind"),
    (dict(family="gan"), BINARY, "model.family"),
    (dict(eval_iwae_k=10, iwae_chunk=4), BINARY, "multiple"),
    (dict(arch="conv"), DataSpec(shape=(16,), binary=True, value_range=(0.0, 1.0)), "image"),
])
def test_bad_config_raises_one_line_config_error(model, spec, match):
    with pytest.raises(ConfigError, match=match) as err:
        make_family(make_config(**model), spec)
    assert "\n" not in str(err.value)
