"""The KL-autoencoder family (latent diffusion's first stage): its loss against a numpy hand computation, the
KL term's normalization on a closed-form latent, PSNR and the latent scale factor, a few steps that halve the
reconstruction error, prior samples, and a CLI run of 2 steps + evaluation."""

import json
import os
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.autoencoders import kl_family
from gm_jax.cli import main
from gm_jax.core import ConfigError, DataSpec
from gm_jax.nn.kl_autoencoder import KLAutoencoder
from gm_jax.train.config import apply_overrides, base_config, load_config_file
from gm_jax.train.workdir import load_workdir

CONFIG = str(Path(__file__).resolve().parents[2] / "experiments" / "configs" / "kl_autoencoder_fashion_mnist.py")
SPEC = DataSpec(shape=(28, 28, 1), value_range=(0.0, 1.0), levels=256, name="toy")


def tiny_config(**model):
    cfg = base_config()
    cfg.model = kl_family.model_defaults()
    cfg.model.channels = (8, 16)
    cfg.optim.learning_rate = 3e-3
    cfg.model.update(model)
    return cfg


def blobs(n, seed=0):
    """n 28x28x1 images in [0, 1]: one Gaussian bump each at a random place and width."""
    rng = np.random.default_rng(seed)
    g = np.arange(28)
    cy, cx, w = rng.uniform(6, 22, n), rng.uniform(6, 22, n), rng.uniform(2, 5, n)
    img = np.exp(-((g[None, :, None] - cy[:, None, None]) ** 2 + (g[None, None, :] - cx[:, None, None]) ** 2)
                 / (2 * w[:, None, None] ** 2))
    return jnp.asarray(img[..., None], jnp.float32)


@pytest.fixture(scope="module")
def setup():
    s = kl_family.build_setup(tiny_config(), SPEC)
    x = blobs(8)
    state = jax.jit(partial(kl_family.init_state, s))(jax.random.key(0), {"x": x})
    return s, state, x


@pytest.mark.parametrize("recon_loss, value_range", [("l1", (0.0, 1.0)), ("mse", (-1.0, 1.0))])
def test_loss_equals_a_numpy_hand_computation(recon_loss, value_range):
    lo, hi = value_range
    spec = DataSpec(shape=(28, 28, 1), value_range=value_range)
    kl_weight = 0.3  # large, so the KL term shows at float32 precision
    s = kl_family.build_setup(tiny_config(recon_loss=recon_loss, kl_weight=kl_weight), spec)
    x = lo + (hi - lo) * blobs(4, seed=1)
    params = {"autoencoder": jax.jit(s.net.init)(jax.random.key(0), x)["params"]}
    key = jax.random.key(5)
    loss, metrics = jax.jit(partial(kl_family.loss_fn, s))(params, x, key)

    apply = jax.jit(s.net.apply, static_argnames="method")
    u = 2.0 * (np.asarray(x, np.float64) - lo) / (hi - lo) - 1.0
    assert u.min() >= -1 - 1e-6 and u.max() <= 1 + 1e-6
    variables = {"params": params["autoencoder"]}
    encoded = apply(variables, jnp.asarray(u, jnp.float32), method="encode")
    mean, logvar = (np.asarray(a, np.float64) for a in encoded)
    eps = np.asarray(jax.random.normal(key, mean.shape, jnp.float32), np.float64)
    z = mean + np.exp(0.5 * logvar) * eps
    recon_u = np.asarray(apply(variables, jnp.asarray(z, jnp.float32), method="decode"))
    diff = recon_u - u
    recon = (np.abs(diff) if recon_loss == "l1" else diff**2).mean()
    kl = 0.5 * (mean**2 + np.exp(logvar) - 1 - logvar).reshape(4, -1).sum(axis=1)
    expected = recon + kl_weight * kl.mean() / 784
    np.testing.assert_allclose(float(metrics["recon"]), recon, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["kl"]), kl.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
    assert kl_weight * kl.mean() / 784 > 1e-3 * expected  # the KL term is really tested


def test_kl_term_normalization_on_a_constant_latent(setup):
    """Encoder output layer zeroed, its bias μ = c, log σ² = 0: KL per image = ½ c² · 7·7·4 and the loss exceeds
    the reconstruction term by kl_weight · KL / 784; with c = 0 the two are exactly equal."""
    s, state, x = setup
    s = kl_family.build_setup(tiny_config(kl_weight=0.5), SPEC)
    params = jax.tree.map(jnp.asarray, state.params)
    conv_out = params["autoencoder"]["encoder"]["conv_out"]
    loss_fn = jax.jit(partial(kl_family.loss_fn, s))
    for c in (0.0, 0.7):
        bias = jnp.concatenate([jnp.full((4,), c), jnp.zeros((4,))])
        p = {"autoencoder": {**params["autoencoder"], "encoder": {
            **params["autoencoder"]["encoder"], "conv_out": {"kernel": jnp.zeros_like(conv_out["kernel"]),
                                                             "bias": bias}}}}
        loss, m = loss_fn(p, x, jax.random.key(1))
        kl = 0.5 * c**2 * 7 * 7 * 4
        np.testing.assert_allclose(float(m["kl"]), kl, rtol=1e-6, atol=0)
        if c == 0.0:
            assert float(m["kl"]) == 0.0 and float(loss) == float(m["recon"])
        else:
            np.testing.assert_allclose(float(loss) - float(m["recon"]), 0.5 * kl / 784, rtol=1e-3)


def test_network_range_psnr_and_latent_scale(setup):
    s, state, x = setup
    for value_range in ((0.0, 1.0), (-1.0, 1.0), (-2.0, 6.0)):
        lo, hi = value_range
        np.testing.assert_allclose(kl_family.to_network(jnp.array([lo, hi, 0.5 * (lo + hi)]), value_range),
                                   [-1.0, 1.0, 0.0], atol=1e-6)
        y = jnp.linspace(lo, hi, 7)
        np.testing.assert_allclose(kl_family.from_network(kl_family.to_network(y, value_range), value_range), y,
                                   rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(kl_family.psnr(0.01)), 20.0, rtol=1e-6)
    np.testing.assert_allclose(float(kl_family.psnr(0.0032)), 10 * np.log10(1 / 0.0032), rtol=1e-6)
    m = jax.jit(partial(kl_family.evaluate, s))(state.params, {"x": x}, jax.random.key(0))
    recon = jax.jit(partial(kl_family.reconstruct, s))(state.params, x)
    mse = np.mean((np.asarray(recon, np.float64) - np.asarray(x, np.float64)) ** 2)  # data range is [0, 1]
    np.testing.assert_allclose(float(m["recon_mse"]), mse, rtol=1e-4)
    np.testing.assert_allclose(float(m["psnr"]), 10 * np.log10(1 / mse), rtol=1e-4)
    mean, _ = jax.jit(partial(s.net.apply, method="encode"))({"params": state.params["autoencoder"]},
                                                              2.0 * x - 1.0)
    factor = float(m["latent_scale_factor"])
    np.testing.assert_allclose(np.std(factor * np.asarray(mean, np.float64)), 1.0, rtol=1e-4)
    np.testing.assert_allclose(factor * float(m["latent_std"]), 1.0, rtol=1e-5)
    assert float(m["kl"]) > 0


def test_few_steps_halve_the_reconstruction_error(setup):
    s, state, x = setup
    evaluate = jax.jit(partial(kl_family.evaluate, s))
    step = jax.jit(partial(kl_family.train_step, s))
    before = float(evaluate(state.params, {"x": x}, jax.random.key(0))["recon_mse"])
    for i in range(40):
        state, metrics = step(state, {"x": x}, jax.random.key(100 + i))
    assert int(state.step) == 40 and np.isfinite(float(metrics["loss"]))
    after = float(evaluate(state.params, {"x": x}, jax.random.key(0))["recon_mse"])
    assert after < 0.5 * before, (before, after)


def test_samples_are_decoded_prior_draws_in_range(setup):
    s, state, _ = setup
    family = kl_family.make_family(tiny_config(), SPEC)
    assert family.sample_options == () and kl_family.SAMPLE_OPTIONS == ()
    x, info = family.sample(state.params, jax.random.key(3), 5)
    assert x.shape == (5, 28, 28, 1) and info == {"nfe": 1}
    assert np.all(np.isfinite(x)) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    z = jax.random.normal(jax.random.key(3), (5, 7, 7, 4))
    decoded = jax.jit(partial(s.net.apply, method="decode"))({"params": state.params["autoencoder"]}, z)
    np.testing.assert_allclose(x, np.clip((np.asarray(decoded) + 1) / 2, 0, 1), rtol=1e-5, atol=1e-6)


def test_bad_config_is_one_clear_error():
    with pytest.raises(ConfigError, match="divisible by 2\\^len\\(model.channels\\) = 8"):
        kl_family.make_family(tiny_config(channels=(4, 8, 8)), SPEC)
    with pytest.raises(ConfigError, match="model.recon_loss"):
        kl_family.make_family(tiny_config(recon_loss="huber"), SPEC)
    with pytest.raises(ConfigError, match="kl_weight"):
        kl_family.make_family(tiny_config(kl_weight=-1.0), SPEC)
    with pytest.raises(ConfigError, match="images"):
        kl_family.make_family(tiny_config(), DataSpec(shape=(2,)))


def test_config_and_cli_train_eval(tmp_path, data_dir, capsys):
    cfg = load_config_file(CONFIG)
    assert cfg.data.name == "fashion_mnist" and cfg.model.family == "kl_autoencoder"
    assert tuple(cfg.model.channels) == (32, 64) and cfg.model.latent_channels == 4
    tiny = [f"--config.data.data_dir={data_dir}", "--config.data.name=fashion_mnist_small",
            "--config.data.num_examples=64", "--config.data.batch_size=16", "--config.model.channels=(4,8)",
            "--config.train.num_steps=2", "--config.train.checkpoint_every=2", "--config.train.log_every=1",
            "--config.train.progress=false", "--config.train.num_samples=4", "--config.train.eval_batches=1"]
    apply_overrides(cfg, tiny)  # the overrides are valid fields
    workdir = str(tmp_path / "run")
    assert main(["train", CONFIG, "--workdir", workdir, *tiny]) == 0
    assert main(["eval", "--workdir", workdir, "--num_batches", "1"]) == 0
    report = json.load(open(os.path.join(workdir, "eval.json")))
    assert report["step"] == 2
    assert all(np.isfinite(report[f"eval/{k}"]) for k in ("recon_mse", "psnr", "kl", "latent_std"))
    np.testing.assert_allclose(report["eval/psnr"], 10 * np.log10(1 / report["eval/recon_mse"]), rtol=1e-4)
    # the layout a latent diffusion run rebuilds the module from
    run, state = load_workdir(workdir)
    m = run.config.model
    net = KLAutoencoder(image_channels=1, latent_channels=m["latent_channels"], channels=tuple(m["channels"]))
    batch = run.pipeline.batch(0)
    mean, _ = jax.jit(partial(net.apply, method="encode"))({"params": state.sampling_params()["autoencoder"]},
                                                            jnp.asarray(batch["x"][:2]))
    assert mean.shape == (2, 7, 7, 4)
