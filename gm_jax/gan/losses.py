"""Adversarial losses as pure functions of discriminator logits.

Every loss takes the discriminator's logits on a real batch and on a generated batch and returns the same
fixed tuple :class:`GANLoss` ``(d_loss, d_real, d_fake, g_loss)`` with ``d_loss = d_real + d_fake``.
The generator loss depends on ``fake_logits`` only. ``D(x) = sigmoid(logit)`` for the probabilistic losses;
the Wasserstein and hinge critics use the raw score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice


class GANLoss(NamedTuple):
    """Discriminator loss, its parts on real and on generated data, and the generator loss (scalars)."""

    d_loss: jax.Array
    d_real: jax.Array
    d_fake: jax.Array
    g_loss: jax.Array


def _pack(d_real: jax.Array, d_fake: jax.Array, g_loss: jax.Array) -> GANLoss:
    return GANLoss(d_real + d_fake, d_real, d_fake, g_loss)


def minimax_loss(real_logits: jax.Array, fake_logits: jax.Array) -> GANLoss:
    """Original minimax game (Goodfellow et al. 2014, eq. 1).

    D minimises ``-E log D(x) - E log(1 - D(G(z)))``; G minimises ``E log(1 - D(G(z)))``.
    With ``D = sigmoid(l)``: ``-log D = softplus(-l)`` and ``log(1 - D) = -softplus(l)``.
    """
    return _pack(jnp.mean(jax.nn.softplus(-real_logits)), jnp.mean(jax.nn.softplus(fake_logits)),
                 -jnp.mean(jax.nn.softplus(fake_logits)))


def non_saturating_loss(real_logits: jax.Array, fake_logits: jax.Array) -> GANLoss:
    """Non-saturating game (Goodfellow et al. 2014, Sec. 3): D as in eq. 1, G maximises ``E log D(G(z))``,
    i.e. minimises ``E softplus(-l_fake)``, which keeps a gradient when D rejects the samples."""
    return _pack(jnp.mean(jax.nn.softplus(-real_logits)), jnp.mean(jax.nn.softplus(fake_logits)),
                 jnp.mean(jax.nn.softplus(-fake_logits)))


def wasserstein_loss(real_logits: jax.Array, fake_logits: jax.Array) -> GANLoss:
    """Wasserstein GAN (Arjovsky et al. 2017, eq. 3 / Alg. 1): the critic minimises
    ``E f(G(z)) - E f(x)``; the generator minimises ``-E f(G(z))``. Needs a Lipschitz constraint
    (clipping, gradient penalty or spectral normalisation)."""
    return _pack(-jnp.mean(real_logits), jnp.mean(fake_logits), -jnp.mean(fake_logits))


def hinge_loss(real_logits: jax.Array, fake_logits: jax.Array) -> GANLoss:
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018, eq. 16-17): D minimises
    ``E max(0, 1 - D(x)) + E max(0, 1 + D(G(z)))``; G minimises ``-E D(G(z))``."""
    return _pack(jnp.mean(jax.nn.relu(1.0 - real_logits)), jnp.mean(jax.nn.relu(1.0 + fake_logits)),
                 -jnp.mean(fake_logits))


def least_squares_loss(real_logits: jax.Array, fake_logits: jax.Array) -> GANLoss:
    """Least-squares GAN (Mao et al. 2017, eq. 2 with a=0, b=c=1): D minimises
    ``1/2 E (D(x) - 1)^2 + 1/2 E D(G(z))^2``; G minimises ``1/2 E (D(G(z)) - 1)^2``."""
    return _pack(0.5 * jnp.mean((real_logits - 1.0) ** 2), 0.5 * jnp.mean(fake_logits ** 2),
                 0.5 * jnp.mean((fake_logits - 1.0) ** 2))


LOSSES: dict[str, Callable[[jax.Array, jax.Array], GANLoss]] = {
    "minimax": minimax_loss,
    "non_saturating": non_saturating_loss,
    "wasserstein": wasserstein_loss,
    "hinge": hinge_loss,
    "least_squares": least_squares_loss,
}


def get_loss(name: str) -> Callable[[jax.Array, jax.Array], GANLoss]:
    """The loss function registered under ``name`` (one of :data:`LOSSES`); ConfigError otherwise."""
    check_choice("GAN loss", name, LOSSES)
    return LOSSES[name]


def generator_loss(name: str, fake_logits: jax.Array) -> jax.Array:
    """Generator part of the loss ``name`` alone (it never depends on the real logits)."""
    return get_loss(name)(jnp.zeros_like(fake_logits), fake_logits).g_loss
