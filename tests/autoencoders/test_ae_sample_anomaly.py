"""Prior sampling, interpolation paths, reconstructions and anomaly scores against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gm_jax.autoencoders import anomaly, sample
from gm_jax.autoencoders.model import VAE, Autoencoder
from gm_jax.core import ConfigError


def test_prior_latents_scale_with_temperature():
    z1 = sample.sample_prior_latents(jax.random.key(0), 4000, 3, 1.0)
    zh = sample.sample_prior_latents(jax.random.key(0), 4000, 3, jnp.float32(0.5))
    np.testing.assert_allclose(zh, 0.5 * z1, rtol=1e-6)
    assert np.std(np.asarray(z1)) == pytest.approx(1.0, abs=0.03)


def test_linear_and_spherical_paths():
    rng = np.random.default_rng(0)
    z0, z1 = (jnp.asarray(v / np.linalg.norm(v), jnp.float32) for v in rng.normal(size=(2, 5)))
    t = jnp.linspace(0.0, 1.0, 7)
    lin = sample.linear_interpolation(z0, z1, t)
    np.testing.assert_allclose(lin[3], (z0 + z1) / 2, rtol=1e-6)
    slerp = np.asarray(sample.spherical_interpolation(z0, z1, t), np.float64)
    np.testing.assert_allclose(slerp[0], z0, atol=1e-6)
    np.testing.assert_allclose(slerp[-1], z1, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(slerp, axis=-1), 1.0, atol=1e-5)  # stays on the sphere
    omega = np.arccos(np.dot(np.asarray(z0, np.float64), np.asarray(z1, np.float64)))
    angles = np.arccos(np.clip(slerp @ np.asarray(z0, np.float64), -1, 1))
    np.testing.assert_allclose(angles, np.asarray(t) * omega, atol=1e-3)  # constant angular speed
    # Parallel end points: the spherical path falls back to the linear one.
    np.testing.assert_allclose(sample.spherical_interpolation(z0, 2 * z0, t),
                               sample.linear_interpolation(z0, 2 * z0, t), atol=1e-5)


def test_interpolation_grid_shape_and_end_points():
    a, b = jnp.zeros((3, 4)), jnp.ones((3, 4))
    grid = sample.interpolation_grid(a, b, 5, "linear")
    assert grid.shape == (3, 5, 4)
    np.testing.assert_allclose(grid[:, 0], a)
    np.testing.assert_allclose(grid[:, -1], b)
    np.testing.assert_allclose(grid[:, 1], 0.25)
    with pytest.raises(ConfigError, match="interpolation method"):
        sample.interpolation_grid(a, b, 5, "cubic")


def test_linear_autoencoders_reconstruct_by_orthogonal_projection():
    # Encoder U, decoder Uᵀ (orthonormal U): the reconstruction is the projection x U Uᵀ.
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.normal(size=(12, 3)))
    x = rng.normal(size=(5, 3, 4, 1)).astype(np.float32)
    proj = (x.reshape(5, 12) @ u @ u.T).reshape(x.shape)
    dec = {"mlp": {"dense_0": {"kernel": jnp.asarray(u.T, jnp.float32), "bias": jnp.zeros(12)}}}
    ae = Autoencoder(data_shape=(3, 4, 1), latent_dim=3, hidden=(), decoder_dist="gaussian")
    ae_params = {"encoder": {"dense_0": {"kernel": jnp.asarray(u, jnp.float32), "bias": jnp.zeros(3)}},
                 "decoder": dec}
    np.testing.assert_allclose(sample.reconstruct(ae, ae_params, jnp.asarray(x)), proj, atol=1e-5)
    vae = VAE(data_shape=(3, 4, 1), latent_dim=3, hidden=(), decoder_dist="gaussian",
              gaussian_variance="fixed")
    kernel = np.concatenate([u, rng.normal(size=(12, 3))], axis=1)
    vae_params = {"encoder": {"dense_0": {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.zeros(6)}},
                  "decoder": dec}
    np.testing.assert_allclose(sample.reconstruct(vae, vae_params, jnp.asarray(x)), proj, atol=1e-5)
    z = jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32)
    np.testing.assert_allclose(sample.decode_latents(vae, vae_params, z),
                               (np.asarray(z) @ u.T).reshape(2, 4, 3, 4, 1), atol=1e-5)


def test_reconstruction_error_matches_numpy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 6, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(anomaly.reconstruction_error(jnp.asarray(x), jnp.asarray(y)),
                               ((x - y) ** 2).reshape(6, -1).mean(-1), rtol=1e-5)


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + 0.8 * labels, 1)  # rounding creates many ties
    assert len(np.unique(scores)) < 100
    assert float(anomaly.roc_auc(scores, labels)) == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert float(jax.jit(anomaly.roc_auc)(scores, labels)) == pytest.approx(roc_auc_score(labels, scores),
                                                                           abs=1e-6)
    assert float(anomaly.roc_auc(np.array([1.0, 2.0, 3.0]), np.array([0, 1, 1]))) == 1.0
    assert float(anomaly.roc_auc(np.array([1.0, 1.0]), np.array([0, 1]))) == 0.5
    with pytest.raises(ConfigError, match="both classes"):
        anomaly.roc_auc(np.array([1.0, 2.0]), np.array([1, 1]))


def test_held_out_class_protocol():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, 200)
    scores = rng.normal(size=200) + (labels == 3)
    out = anomaly.held_out_class_auc(scores, labels, 3)
    assert float(out["auc"]) == pytest.approx(roc_auc_score(labels == 3, scores), abs=1e-6)
    assert float(out["score_anomalous"]) == pytest.approx(scores[labels == 3].mean(), rel=1e-5)
    assert float(out["score_normal"]) == pytest.approx(scores[labels != 3].mean(), abs=1e-5)
    x = np.arange(200)
    kept = anomaly.split_held_out_class(x, labels, 3)
    np.testing.assert_array_equal(kept, x[labels != 3])
    with pytest.raises(ConfigError, match="held_out_class"):
        anomaly.split_held_out_class(x, labels, 9)
