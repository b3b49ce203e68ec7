"""The KL autoencoder of latent diffusion: the closed-form KL (hand value, zero at the prior, a Monte-Carlo
check), the reparametrized sample's moments, the latent scale factor, and 28×28×1 → 7×7×4 → 28×28×1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.nn.kl_autoencoder import KLAutoencoder, kl_loss, latent_scale_factor, reparameterize


def test_kl_loss_closed_form_and_zero_at_the_prior():
    mean = np.array([[[0.5, -1.0]], [[0.0, 2.0]]])  # [B=2, 1, 2]
    logvar = np.array([[[0.0, np.log(4.0)]], [[-1.0, 0.0]]])
    per_dim = 0.5 * (mean**2 + np.exp(logvar) - 1 - logvar)
    expected = per_dim.reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(kl_loss(jnp.asarray(mean), jnp.asarray(logvar)), expected, rtol=1e-6)
    np.testing.assert_allclose(expected[0], 0.5 * 0.25 + 0.5 * (1.0 + 4.0 - 1.0 - np.log(4.0)), rtol=1e-12)
    zeros = jnp.zeros((3, 7, 7, 4))
    np.testing.assert_array_equal(kl_loss(zeros, zeros), np.zeros(3))


def test_kl_loss_matches_monte_carlo_estimate():
    mean, logvar = jnp.array([[0.7, -0.3]]), jnp.array([[0.4, -0.8]])
    z = reparameterize(jnp.broadcast_to(mean, (200_000, 2)), jnp.broadcast_to(logvar, (200_000, 2)),
                       jax.random.key(0))
    log_q = -0.5 * ((z - mean) ** 2 / jnp.exp(logvar) + logvar + jnp.log(2 * jnp.pi))
    log_p = -0.5 * (z**2 + jnp.log(2 * jnp.pi))
    mc = float(jnp.mean(jnp.sum(log_q - log_p, axis=1)))
    np.testing.assert_allclose(mc, float(kl_loss(mean, logvar)[0]), rtol=2e-2)
    np.testing.assert_allclose(jnp.std(z, axis=0), jnp.exp(0.5 * logvar[0]), rtol=1e-2)


def test_latent_scale_factor_gives_unit_variance():
    latents = 3.0 + 0.2 * jax.random.normal(jax.random.key(0), (16, 7, 7, 4))
    factor = latent_scale_factor(latents)
    np.testing.assert_allclose(float(jnp.std(factor * latents)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(float(factor), 1.0 / np.std(np.asarray(latents, np.float64)), rtol=1e-5)
    np.testing.assert_allclose(float(factor), 5.0, rtol=5e-2)  # 1 / 0.2: the offset 3 does not matter


def test_kl_autoencoder_shapes_encode_decode():
    model = KLAutoencoder(image_channels=1, latent_channels=4, channels=(8, 16))
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    variables = jax.jit(model.init)(jax.random.key(1), x)  # jitted: eager linen compiles op by op
    apply = jax.jit(model.apply, static_argnames="method")
    recon, mean, logvar = apply(variables, x)
    assert mean.shape == logvar.shape == (2, 7, 7, 4) and recon.shape == x.shape
    np.testing.assert_allclose(apply(variables, mean, method="decode"), recon, rtol=1e-5, atol=1e-6)
    enc_mean, enc_logvar = apply(variables, x, method="encode")
    np.testing.assert_allclose(enc_mean, mean)
    sampled = apply(variables, x, jax.random.key(2))[0]
    assert not np.allclose(sampled, recon)
    loss = lambda v: jnp.mean((model.apply(v, x, jax.random.key(3))[0] - x) ** 2) + jnp.mean(
        kl_loss(*model.apply(v, x, method="encode")))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(jax.jit(jax.grad(loss))(variables)))
    with pytest.raises(ConfigError, match="divisible by 4"):
        jax.eval_shape(model.init, jax.random.key(1), jnp.zeros((1, 30, 30, 1)))
