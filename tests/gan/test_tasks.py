"""Pix2Pix, CycleGAN and SRGAN generator objectives against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.gan.tasks import (
    cycle_consistency_loss,
    cyclegan_generator_loss,
    identity_loss,
    pix2pix_generator_loss,
    srgan_generator_loss,
)

X = jax.random.normal(jax.random.key(0), (8, 4))
Y = jax.random.normal(jax.random.key(1), (8, 4))
A = jnp.array([[2.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.3, 0.0], [0.1, 0.0, 1.5, 0.0], [0.0, 0.0, 0.2, 0.7]])


def test_cycle_loss_zero_for_inverse_linear_maps_and_l1_otherwise():
    a_inv = jnp.linalg.inv(A)
    g, f = (lambda v: v @ A), (lambda v: v @ a_inv)
    assert float(cycle_consistency_loss(g, f, X, Y)) < 1e-5
    # With F = G the cycle is x A A: the loss is mean |x A^2 - x| + mean |y A^2 - y|.
    x, y, a = np.asarray(X), np.asarray(Y), np.asarray(A)
    expected = np.mean(np.abs(x @ a @ a - x)) + np.mean(np.abs(y @ a @ a - y))
    np.testing.assert_allclose(cycle_consistency_loss(g, g, X, Y), expected, rtol=1e-5)


def test_identity_loss():
    ident = lambda v: v
    assert float(identity_loss(ident, ident, X, Y)) == 0.0
    x, y = np.asarray(X), np.asarray(Y)
    expected = np.mean(np.abs(2 * y - y)) + np.mean(np.abs(-x - x))
    np.testing.assert_allclose(identity_loss(lambda v: 2 * v, lambda v: -v, X, Y), expected, rtol=1e-6)


def test_pix2pix_objective_is_adversarial_plus_weighted_l1():
    logits = jnp.array([[0.3, -1.0], [2.0, 0.0]])
    fake, target = X[:4], Y[:4]
    out = pix2pix_generator_loss(logits, fake, target, l1_weight=100.0)
    adv = np.mean(np.log1p(np.exp(-np.asarray(logits))))  # -log sigmoid(l)
    l1 = np.mean(np.abs(np.asarray(fake) - np.asarray(target)))
    np.testing.assert_allclose([out.adversarial, out.l1, out.total], [adv, l1, adv + 100 * l1], rtol=1e-5)


def test_cyclegan_total_uses_least_squares_and_weights():
    ly, lx = jnp.array([0.2, 0.9]), jnp.array([-0.5])
    out = cyclegan_generator_loss(ly, lx, jnp.asarray(0.3), jnp.asarray(0.1), 10.0, 5.0)
    adv = 0.5 * np.mean((np.asarray(ly) - 1) ** 2) + 0.5 * np.mean((np.asarray(lx) - 1) ** 2)
    np.testing.assert_allclose([out.adversarial, out.total], [adv, adv + 3.0 + 0.5], rtol=1e-5)


def test_srgan_content_in_pixel_and_feature_space():
    sr, hr = X.reshape(2, 4, 4, 1), Y.reshape(2, 4, 4, 1)
    logits = jnp.array([1.0, -2.0])
    adv = np.mean(np.log1p(np.exp(-np.asarray(logits))))
    out = srgan_generator_loss(logits, sr, hr)
    mse = np.mean((np.asarray(sr) - np.asarray(hr)) ** 2)
    np.testing.assert_allclose([out.content, out.total], [mse, mse + 1e-3 * adv], rtol=1e-5)
    feat = lambda v: jnp.mean(v, axis=(1, 2))
    out_f = srgan_generator_loss(logits, sr, hr, feature_fn=feat)
    f_mse = np.mean((np.asarray(sr).mean(axis=(1, 2)) - np.asarray(hr).mean(axis=(1, 2))) ** 2)
    np.testing.assert_allclose(out_f.content, f_mse, rtol=1e-5)


def test_bad_weights_and_shapes_are_one_line_errors():
    for call in (lambda: pix2pix_generator_loss(jnp.zeros(2), X, Y, l1_weight=-1.0),
                 lambda: cyclegan_generator_loss(jnp.zeros(2), jnp.zeros(2), 0.0, 0.0, cycle_weight=-10.0),
                 lambda: srgan_generator_loss(jnp.zeros(2), X, Y[:4])):
        with pytest.raises(ConfigError) as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="l1_weight must be >= 0"):
        pix2pix_generator_loss(jnp.zeros(2), X, Y, l1_weight=-1.0)
