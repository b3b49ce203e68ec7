"""SR3 super-resolution (Saharia et al. 2022) in the diffusion family: the network sees concat([x_t, A⁺y]) and
its loss changes with y; with the exact conditional denoiser E[x_0 | x_t, y] of a Gaussian prior the SR3
sampling chain draws the exact Gaussian posterior p(x | y); the CLI trains an SR3 run and restores with
``--method sr3``; the wrong model or operator is one line."""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gm_jax.cli import main
from gm_jax.core import DataSpec
from gm_jax.core.errors import ConfigError
from gm_jax.diffusion import family as fam_mod
from gm_jax.diffusion import gmm
from gm_jax.diffusion.operators import dense_matrix, downsample, half_mask

SR3 = str(Path(__file__).resolve().parents[2] / "experiments" / "configs" / "sr3_fashion_mnist.py")
SHAPE = (4, 4, 1)


def _config(**model):
    cfg = ml_collections.ConfigDict()
    cfg.model = fam_mod.model_defaults()
    cfg.model.update(dict(network="mlp", mlp_hidden=(16,), mlp_emb_dim=8, num_timesteps=20, max_sample_steps=20,
                          sample_steps=20, class_conditional=False, condition="superres", sr_scale=2))
    cfg.model.update(model)
    cfg.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3))
    return cfg


def test_network_sees_condition_and_loss_depends_on_y():
    spec = DataSpec(shape=SHAPE)
    s = fam_mod.build_setup(_config(), spec)
    x = jax.random.uniform(jax.random.key(0), (3,) + SHAPE, minval=-1.0, maxval=1.0)
    params = fam_mod.init(s, jax.random.key(1), {"x": x}).params
    assert params["dense0"]["kernel"].shape[0] == 2 * int(np.prod(SHAPE))  # input [x_t, A⁺y]: 2C channels
    key = jax.random.key(2)
    cond = s.cond_op.pinv(s.cond_op.A(x))
    default = fam_mod.denoising_loss(s, params, x, None, key, False)
    same = fam_mod.denoising_loss(s, params, x, None, key, False, cond)
    other = fam_mod.denoising_loss(s, params, x, None, key, False, cond + 0.5)
    np.testing.assert_allclose(default, same, rtol=1e-6)  # the default condition is A⁺A x of the batch
    assert float(jnp.max(jnp.abs(other - same))) > 1e-4
    net = fam_mod.network_fn(s, params, cond=cond)
    out = net(x, jnp.ones((3,)), None)
    assert out.shape == x.shape
    assert float(jnp.max(jnp.abs(out - fam_mod.network_fn(s, params, cond=-cond)(x, jnp.ones((3,)), None)))) > 1e-4
    # the U-Net: 2C input channels, C output channels (shapes only, nothing compiled)
    u = fam_mod.build_setup(_config(network="unet", unet="tiny"), DataSpec(shape=(8, 8, 1)))
    shapes = jax.eval_shape(lambda k: u.net_module.init(k, fam_mod.network_input(jnp.zeros((2, 8, 8, 1)),
                                                                               jnp.zeros((2, 8, 8, 1))),
                                                        jnp.zeros((2,)))["params"], jax.random.key(0))
    assert shapes["conv_in"]["kernel"].shape[2] == 2 and shapes["conv_out"]["kernel"].shape[3] == 1


class ExactConditional:
    """A stand-in for the network: ε̂(x_t, A⁺y) = (x_t − α E[x_0 | x_t, y])/σ of the Gaussian prior
    N(μ, Σ), with p(x_0 | y) from gmm.posterior (y = A A⁺y) and E[x_0 | x_t, y] from gmm.x0_prediction."""

    def __init__(self, prior, a, sigma_y, process):
        self.prior, self.a, self.sigma_y, self.process = prior, a, sigma_y, process

    def apply(self, variables, x, t, label, train, rngs=None):
        del variables, label, train, rngs
        b, c = x.shape[0], x.shape[-1] // 2
        x_t, u = x[..., :c].reshape(b, -1), x[..., c:].reshape(b, -1)
        alpha, sigma = self.process.alpha_sigma(jnp.round(t).astype(jnp.int32))

        def one(xi, ui, a_i, s_i):
            post = gmm.posterior(self.prior, self.a, self.a @ ui, self.sigma_y)
            x0 = gmm.x0_prediction(post, xi[None], a_i, s_i)[0]
            return (xi - a_i * x0) / s_i

        out = jax.vmap(one)(x_t, u, alpha, sigma).reshape((b,) + SHAPE)
        return jnp.concatenate([out, jnp.zeros_like(out)], -1)  # 2C outputs, as the MLP's; the first C are used


def test_sr3_chain_draws_the_exact_gaussian_posterior():
    d = int(np.prod(SHAPE))
    rs = np.random.RandomState(0)
    root = rs.randn(d, d) / np.sqrt(d)
    mu, cov = 0.2 * rs.randn(d), 0.04 * (root @ root.T) + 0.01 * np.eye(d)  # inside [−1, 1] (no clipping)
    prior = gmm.gaussian_mixture(jnp.ones(1), jnp.asarray(mu)[None], jnp.asarray(cov)[None])
    sigma_y = 0.02
    # the cosine schedule ends at ᾱ_T ≈ 0, so x_T ~ N(0, I) is the right start (a linear one at T = 100 is not)
    s = fam_mod.build_setup(_config(num_timesteps=100, max_sample_steps=100, sample_steps=100, sampler="ddpm",
                                    beta_schedule="cosine", clip_denoised=False), DataSpec(shape=SHAPE))
    op = downsample(SHAPE, 2)
    a = dense_matrix(op)
    s = dataclasses.replace(s, net_module=ExactConditional(prior, a, sigma_y, s.process))
    x_true = gmm.sample(prior, jax.random.key(3), 1)
    y = np.asarray(op.A(x_true.reshape((1,) + SHAPE)))
    n = 2000
    x, info = fam_mod.restore(s, {}, {}, jax.random.key(4), y, op, method="sr3", num=n, sigma_y=sigma_y)
    assert info["nfe"] == 100
    flat = np.asarray(x).reshape(n, d)
    post = gmm.posterior(prior, a, jnp.asarray(y).reshape(-1), sigma_y)
    p_mean, p_cov = (np.asarray(v) for v in gmm.moments(post))
    se = np.sqrt(np.diag(p_cov) / n)
    assert np.max(np.abs(flat.mean(0) - p_mean) / (se + 1e-3)) < 5.0
    # A x ≈ y in distribution: A x | y has mean A m_y and covariance A C_y Aᵀ (≈ σ_y² I: the data pins A x)
    ax = flat @ np.asarray(a).T
    np.testing.assert_allclose(ax.mean(0), np.asarray(a) @ p_mean, atol=5 * sigma_y / np.sqrt(n) + 5e-3)
    np.testing.assert_allclose(np.cov(ax.T), np.asarray(a) @ p_cov @ np.asarray(a).T, atol=2e-3)
    # the total spread matches the posterior's; the check discriminates: ignoring y would give the prior mean
    np.testing.assert_allclose(np.cov(flat.T).trace(), p_cov.trace(), rtol=0.15)
    assert np.max(np.abs(p_mean - mu) / se) > 20.0


def test_sr3_one_line_errors():
    spec = DataSpec(shape=SHAPE)
    op = downsample(SHAPE, 2)
    y = np.zeros((1, 2, 2, 1), np.float32)
    plain = fam_mod.make_family(_config(condition=""), spec)
    params = plain.init(jax.random.key(0), {"x": np.zeros((2,) + SHAPE, np.float32)}).params
    with pytest.raises(ConfigError, match="model.condition 'superres'.*condition=superres"):
        plain.restore(params, jax.random.key(0), y, op, "sr3")
    sr3 = fam_mod.make_family(_config(), spec)
    params = sr3.init(jax.random.key(0), {"x": np.zeros((2,) + SHAPE, np.float32)}).params
    op4 = downsample(SHAPE, 4)
    with pytest.raises(ConfigError, match="--task superres --scale 2"):
        sr3.restore(params, jax.random.key(0), np.zeros((1, 1, 1, 1), np.float32), op4, "sr3")
    with pytest.raises(ConfigError, match="--task superres --scale 2"):
        sr3.restore(params, jax.random.key(0), np.zeros((1,) + SHAPE, np.float32), half_mask(SHAPE), "sr3")
    with pytest.raises(ConfigError, match="use --method sr3"):
        sr3.restore(params, jax.random.key(0), y, op, "ddrm")
    with pytest.raises(ConfigError, match="does not take --eta"):
        sr3.restore(params, jax.random.key(0), y, op, "sr3", eta=0.5)
    for bad, text in (({"sr_scale": 3}, "model.sr_scale must be >= 2 and divide"),
                      ({"condition": "inpaint"}, "model.condition")):
        with pytest.raises(ConfigError, match=text):
            fam_mod.make_family(_config(**bad), spec)
    with pytest.raises(ConfigError, match="needs image data"):
        fam_mod.make_family(_config(), DataSpec(shape=(4,)))


def test_cli_train_and_restore_sr3(tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    flags = [f"--config.data.data_dir={data_dir}", "--config.data.name=fashion_mnist_small",
             "--config.data.num_examples=64", "--config.data.batch_size=16", "--config.data.scale=zero_one",
             "--config.model.network=mlp", "--config.model.mlp_hidden=(16,)", "--config.model.mlp_emb_dim=8",
             "--config.model.num_timesteps=20", "--config.model.max_sample_steps=20",
             "--config.model.sample_steps=3", "--config.model.eval_num_t=2", "--config.model.sampler=ddpm",
             "--config.model.sr_sigma_y=0.01",
             "--config.train.num_steps=2", "--config.train.checkpoint_every=2", "--config.train.log_every=1",
             "--config.train.progress=false", "--config.train.num_samples=2", "--config.train.eval_batches=1",
             "--config.train.sample_every=0", "--config.train.eval_every=0", "--config.optim.ema_decay=0.0"]
    assert main(["train", SR3, "--workdir", str(run), *flags]) == 0
    rs = np.random.RandomState(0)
    np.savez(tmp_path / "imgs.npz", images=rs.rand(2, 28, 28, 1).astype(np.float32))
    capsys.readouterr()
    assert main(["restore", "--workdir", str(run), "--task", "superres", "--scale", "4", "--method", "sr3",
                 "--input", str(tmp_path / "imgs.npz"), "--num", "3", "--steps", "3",
                 "--out", str(tmp_path / "sr")]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["method"] == "sr3" and info["nfe"] == 3
    out = np.load(info["npz"])
    assert out["restorations"].shape == (3, 2, 28, 28, 1) and out["y"].shape == (2, 7, 7, 1)
    assert np.all((out["restorations"] >= 0) & (out["restorations"] <= 1))
    from PIL import Image
    assert Image.open(info["png"]).size[0] >= 2 * 28
    assert main(["restore", "--workdir", str(run), "--task", "superres", "--scale", "2", "--method", "sr3",
                 "--input", str(tmp_path / "imgs.npz")]) == 2
    assert "--scale 4" in capsys.readouterr().err
    # another registered sampler for the SR3 chain: Heun's 2N - 1 evaluations; a zero-shot method takes none
    restore = ["restore", "--workdir", str(run), "--task", "superres", "--scale", "4", "--input",
               str(tmp_path / "imgs.npz"), "--steps", "3", "--sampler", "heun", "--out", str(tmp_path / "heun")]
    assert main([*restore, "--method", "sr3"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["nfe"] == 5 and np.load(info["npz"])["restorations"].shape == (4, 2, 28, 28, 1)
    assert main([*restore, "--method", "ddrm"]) == 2
    assert "does not take --sampler" in capsys.readouterr().err
