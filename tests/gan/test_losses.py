"""Each adversarial loss against its formula on hand-picked logits, and the saturation argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.gan.losses import LOSSES, generator_loss, get_loss

REAL = np.array([2.0, -1.0, 0.5, 0.0])
FAKE = np.array([-3.0, 1.0, 0.25])


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference(name):
    """(d_real, d_fake, g_loss) written from the papers' formulas with D = sigmoid(logit)."""
    dr, df = sigmoid(REAL), sigmoid(FAKE)
    if name == "minimax":
        return -np.mean(np.log(dr)), -np.mean(np.log(1 - df)), np.mean(np.log(1 - df))
    if name == "non_saturating":
        return -np.mean(np.log(dr)), -np.mean(np.log(1 - df)), -np.mean(np.log(df))
    if name == "wasserstein":
        return -np.mean(REAL), np.mean(FAKE), -np.mean(FAKE)
    if name == "hinge":
        return np.mean(np.maximum(0, 1 - REAL)), np.mean(np.maximum(0, 1 + FAKE)), -np.mean(FAKE)
    return 0.5 * np.mean((REAL - 1) ** 2), 0.5 * np.mean(FAKE ** 2), 0.5 * np.mean((FAKE - 1) ** 2)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_matches_formula(name):
    out = get_loss(name)(jnp.asarray(REAL), jnp.asarray(FAKE))
    d_real, d_fake, g_loss = reference(name)
    np.testing.assert_allclose([out.d_real, out.d_fake, out.g_loss], [d_real, d_fake, g_loss], rtol=1e-5)
    np.testing.assert_allclose(out.d_loss, d_real + d_fake, rtol=1e-5)
    np.testing.assert_allclose(generator_loss(name, jnp.asarray(FAKE)), g_loss, rtol=1e-5)


def test_confused_discriminator_value_is_log4():
    """At D = 1/2 everywhere (logit 0) the discriminator loss is -2 log(1/2) = log 4 (Goodfellow Thm 1)."""
    out = get_loss("minimax")(jnp.zeros(5), jnp.zeros(5))
    np.testing.assert_allclose(out.d_loss, np.log(4.0), rtol=1e-6)


def test_minimax_generator_gradient_saturates_non_saturating_does_not():
    """d/dl log(1 - sigmoid(l)) = -sigmoid(l) -> 0 as D(G(z)) -> 0, while d/dl -log sigmoid(l) =
    -(1 - sigmoid(l)) -> -1 (Goodfellow et al. 2014, Sec. 3)."""
    logits = jnp.array([-12.0, -6.0, -2.0, 0.0, 3.0])
    grad_mm = jax.vmap(jax.grad(lambda v: generator_loss("minimax", v[None])))(logits)
    grad_ns = jax.vmap(jax.grad(lambda v: generator_loss("non_saturating", v[None])))(logits)
    np.testing.assert_allclose(grad_mm, -sigmoid(np.asarray(logits)), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(grad_ns, -(1 - sigmoid(np.asarray(logits))), rtol=1e-5, atol=1e-9)
    assert abs(grad_mm[0]) < 1e-5 and abs(grad_ns[0]) > 0.999


def test_unknown_loss_is_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        get_loss("wasserstien")
    message = str(err.value)
    assert "wasserstien" in message and "hinge" in message and "\n" not in message
