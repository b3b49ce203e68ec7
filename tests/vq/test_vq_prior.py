"""VQ-VAE stage 2: the code prior's causality and sampler, the discretized Gaussian decoder likelihood, and
the prior family trained through the loop on a stage-1 run's codes, then sampled from the CLI."""

import json
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gm_jax.cli import main as cli_main
from gm_jax.core import CheckpointError, ConfigError
from gm_jax.metrics.likelihood import discretized_gaussian_log_prob
from gm_jax.train.config import apply_overrides, load_config_file
from gm_jax.train.loop import train
from gm_jax.train.workdir import load_workdir
from gm_jax.vq import code_prior, code_prior_init, code_prior_logits, sample_code_grid
from gm_jax.vq.model import VQVAE

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "configs")
TINY = ["--config.data.name=fashion_mnist_small", "--config.data.num_examples=64", "--config.data.batch_size=16",
        "--config.train.progress=false", "--config.train.log_every=1", "--config.train.num_samples=4",
        "--config.train.eval_batches=1", "--config.train.eval_batch_size=16"]


def test_code_prior_is_causal_on_one_hot_codes():
    num_codes, grid = 3, (3, 4)
    prior = code_prior(num_codes, hidden=8, num_layers=3)
    params = code_prior_init(prior, jax.random.key(0), grid)
    one_hot = jax.nn.one_hot(jnp.asarray(np.random.default_rng(0).integers(0, 3, (1, *grid))), num_codes)
    # d logits[i, j] / d input[i', j'] must vanish unless (i', j') comes strictly before (i, j) in raster order
    jac = jax.jit(jax.jacobian(lambda v: prior.apply(params, v)[0, ..., 0, :]))(one_hot)[:, :, :, 0]  # [h,w,K,h,w,K]
    dep = np.abs(np.asarray(jac)).sum(axis=(2, 5)) > 0
    for i in range(grid[0]):
        for j in range(grid[1]):
            later = np.array([[(a, b) >= (i, j) for b in range(grid[1])] for a in range(grid[0])])
            assert not dep[i, j][later].any(), (i, j)
            assert dep[i, j][~later].all(), (i, j)  # and no blind spot: every earlier code is seen


def test_code_grid_sampler_draws_the_tempered_softmax():
    num_codes, grid = 4, (2, 2)
    prior = code_prior(num_codes, hidden=4, num_layers=1)
    params = jax.tree.map(jnp.zeros_like, code_prior_init(prior, jax.random.key(0), grid))
    logits = jnp.array([1.0, -0.5, 0.3, 0.0])
    params["params"]["head_1"]["bias"] = logits  # an input-independent prior
    k, info = jax.jit(sample_code_grid, static_argnums=(0, 3, 4))(prior, params, jax.random.key(3), 4000, grid,
                                                                   jnp.float32(2.0))
    assert info["nfe"] == 4
    freq = np.bincount(np.asarray(k).ravel(), minlength=num_codes) / k.size
    expected = np.exp(np.asarray(logits) / 2.0) / np.exp(np.asarray(logits) / 2.0).sum()
    np.testing.assert_allclose(freq, expected, atol=0.015)  # 16000 draws: 3 standard errors ≈ 0.012
    np.testing.assert_allclose(code_prior_logits(prior, params, k[:2])[0, 0, 0], logits, rtol=1e-6)


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_discretized_gaussian_matches_scipy_and_sums_to_one(value_range):
    levels, lo, hi = 256, *value_range
    x = lo + np.arange(levels) * (hi - lo) / (levels - 1)
    half = (hi - lo) / (2 * (levels - 1))
    for mean, sigma in [(0.3 * hi, 0.05), (lo + 0.01, 0.2), (hi + 0.3, 0.01), (0.5 * (lo + hi), 1e-3)]:
        log_p = np.asarray(discretized_gaussian_log_prob(jnp.asarray(x, jnp.float32), jnp.float32(mean),
                                                         jnp.float32(np.log(sigma)), value_range, levels))
        upper = np.where(np.arange(levels) == levels - 1, np.inf, x + half)
        lower = np.where(np.arange(levels) == 0, -np.inf, x - half)
        p = stats.norm.cdf(upper, mean, sigma) - stats.norm.cdf(lower, mean, sigma)
        big = p > 1e-6
        np.testing.assert_allclose(log_p[big], np.log(p[big]), rtol=2e-4, atol=2e-4)
        assert np.all(np.isfinite(log_p))
        np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, atol=1e-4)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, data_dir):
    """A stage-1 VQ-VAE run (2 steps, 7x7 grid of 5 codes), trained once for this module."""
    tmp_path = tmp_path_factory.mktemp("vq")
    cfg = apply_overrides(load_config_file(os.path.join(CONFIGS, "vqvae_fashion_mnist.py")),
                          TINY + ["--config.train.num_steps=2", "--config.model.channels=(4,8)",
                                  "--config.model.num_codes=5", "--config.model.code_dim=3",
                                  f"--config.data.data_dir={data_dir}"])
    workdir = str(tmp_path / "stage1")
    train(cfg, workdir)
    return workdir


def test_prior_trains_on_stage1_codes_and_samples_from_the_cli(stage1, tmp_path, data_dir, capsys):
    cfg = apply_overrides(load_config_file(os.path.join(CONFIGS, "vqvae_prior_fashion_mnist.py")),
                          TINY + ["--config.train.num_steps=2", f"--config.model.prior_of={stage1}",
                                  "--config.model.prior_hidden=8", "--config.model.prior_layers=6",
                                  f"--config.data.data_dir={data_dir}"])
    workdir = str(tmp_path / "stage2")
    train(cfg, workdir)
    run1, state1 = load_workdir(stage1)
    run2, state2 = load_workdir(workdir)
    params = state2.params
    # the VQ-VAE is frozen: stage-2 parameters hold stage 1's exactly
    for a, b in zip(jax.tree.leaves(params["vqvae"]),
                    jax.tree.leaves({"net": state1.params["net"], "codebook": state1.params["codebook"]}),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # evaluate: −ELBO = prior NLL + discretized-Gaussian decoder NLL, bits/dim = −ELBO / (D ln 2)
    batch = run2.pipeline.batch(0)
    x = jnp.asarray(batch["x"])
    m = jax.jit(run2.family.evaluate)(params, {"x": x}, jax.random.key(0))
    net = VQVAE((4, 8), 3, 1)
    vq = params["vqvae"]
    k = jax.jit(partial(net.apply, method=VQVAE.encode))(vq["net"], x, vq["codebook"])  # jitted: eager is op by op
    x_hat = jax.jit(partial(net.apply, method=VQVAE.decode))(vq["net"], k, vq["codebook"])
    sigma = float(np.exp(params["log_sigma"]))
    levels = np.rint((np.asarray(x, np.float64) + 1) * 127.5)
    upper = np.where(levels == 255, np.inf, np.asarray(x) + 1 / 255)
    lower = np.where(levels == 0, -np.inf, np.asarray(x) - 1 / 255)
    dec_nll = -np.log(stats.norm.cdf(upper, x_hat, sigma) - stats.norm.cdf(lower, x_hat, sigma)).sum((1, 2, 3))
    np.testing.assert_allclose(float(m["loss"]), float(m["prior_nll"]) + dec_nll.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(m["bits_per_dim"]), float(m["loss"]) / (784 * np.log(2)), rtol=1e-5)
    assert 0 < float(m["prior_nll"]) < 3 * 49 * np.log(5)  # a uniform prior costs 49 log 5 nats
    # gm-jax sample draws new images from the VQ-VAE run: decoded 7x7 code grids, 49 prior passes
    assert cli_main(["sample", "--workdir", workdir, "--num", "3", "--temperature", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["nfe"] == 49 and out["num"] == 3
    images = np.load(out["npz"])["samples"]
    assert images.shape == (3, 28, 28, 1) and images.min() >= -1 and images.max() <= 1


def test_prior_bad_input_errors(stage1, tmp_path, data_dir):
    base = load_config_file(os.path.join(CONFIGS, "vqvae_prior_fashion_mnist.py"))
    missing = apply_overrides(base, TINY + [f"--config.model.prior_of={tmp_path / 'nowhere'}",
                                            f"--config.data.data_dir={data_dir}"])
    with pytest.raises(CheckpointError, match="prior_of=.*(not a directory|no config.json)"):
        train(missing, str(tmp_path / "a"))
    few_layers = apply_overrides(base, TINY + [f"--config.model.prior_of={stage1}", "--config.model.prior_layers=2",
                                               f"--config.data.data_dir={data_dir}"])
    with pytest.raises(ConfigError, match="prior_layers"):
        train(few_layers, str(tmp_path / "b"))
    dequantized = apply_overrides(base, TINY + [f"--config.model.prior_of={stage1}", "--config.data.dequantize=true",
                                                f"--config.data.data_dir={data_dir}"])
    with pytest.raises(ConfigError, match="dequantize"):
        train(dequantized, str(tmp_path / "c"))
