"""Losses of image-to-image GANs as pure functions: Pix2Pix (cGAN + lambda L1), CycleGAN (cycle consistency +
identity) and SRGAN (content + adversarial).

Weights may be Python floats or arrays; a negative weight known on the host raises a ConfigError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gm_jax.core.errors import ConfigError, require
from gm_jax.gan.losses import generator_loss

ImageMap = Callable[[jax.Array], jax.Array]


def check_weight(name: str, value: float | jax.Array) -> None:
    """ConfigError if the loss weight ``value`` is negative (checked only when it is concrete, not traced)."""
    if isinstance(value, jax.core.Tracer):
        return
    require(float(value) >= 0, f"{name} must be >= 0, got {float(value)}; use 0 to switch the term off")


def _check_same_shape(what: str, a: jax.Array, b: jax.Array) -> None:
    if a.shape != b.shape:
        raise ConfigError(f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ; pass arrays of "
                          "the same shape")


def l1_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute difference ``E |a - b|`` (the L1 term of Isola et al. 2017, eq. 3)."""
    _check_same_shape("l1_distance", a, b)
    return jnp.mean(jnp.abs(a - b))


class Pix2PixGeneratorLoss(NamedTuple):
    """Total generator loss and its adversarial and L1 parts."""

    total: jax.Array
    adversarial: jax.Array
    l1: jax.Array


def pix2pix_generator_loss(fake_logits: jax.Array, fake: jax.Array, target: jax.Array,
                           l1_weight: float | jax.Array = 100.0,
                           loss: str = "non_saturating") -> Pix2PixGeneratorLoss:
    """Pix2Pix generator objective (Isola et al. 2017, eq. 4): ``L_cGAN(G, D) + lambda E |y - G(x, z)|``
    with the adversarial part of the named loss on PatchGAN logits of ``(condition, fake)``."""
    check_weight("l1_weight", l1_weight)
    adversarial = generator_loss(loss, fake_logits)
    l1 = l1_distance(fake, target)
    return Pix2PixGeneratorLoss(adversarial + l1_weight * l1, adversarial, l1)


def cycle_consistency_loss(g_xy: ImageMap, f_yx: ImageMap, x: jax.Array, y: jax.Array) -> jax.Array:
    """Cycle-consistency loss (Zhu et al. 2017, eq. 2):
    ``E_x ||F(G(x)) - x||_1 + E_y ||G(F(y)) - y||_1`` (means over all elements)."""
    return l1_distance(f_yx(g_xy(x)), x) + l1_distance(g_xy(f_yx(y)), y)


def identity_loss(g_xy: ImageMap, f_yx: ImageMap, x: jax.Array, y: jax.Array) -> jax.Array:
    """Identity mapping loss (Zhu et al. 2017, Sec. 5.2, eq. 6 of Taigman et al. 2017):
    ``E_y ||G(y) - y||_1 + E_x ||F(x) - x||_1``."""
    return l1_distance(g_xy(y), y) + l1_distance(f_yx(x), x)


class CycleGANGeneratorLoss(NamedTuple):
    """Total loss of both generators and its parts."""

    total: jax.Array
    adversarial: jax.Array
    cycle: jax.Array
    identity: jax.Array


def cyclegan_generator_loss(fake_y_logits: jax.Array, fake_x_logits: jax.Array, cycle: jax.Array,
                            identity: jax.Array, cycle_weight: float | jax.Array = 10.0,
                            identity_weight: float | jax.Array = 5.0,
                            loss: str = "least_squares") -> CycleGANGeneratorLoss:
    """Full CycleGAN objective for the generators (Zhu et al. 2017, eq. 3, least-squares GAN loss by
    default as in their Sec. 4): ``L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda L_cyc + lambda_id L_identity``,
    given the discriminator logits on ``G(x)`` and ``F(y)`` and the precomputed cycle/identity terms."""
    check_weight("cycle_weight", cycle_weight)
    check_weight("identity_weight", identity_weight)
    adversarial = generator_loss(loss, fake_y_logits) + generator_loss(loss, fake_x_logits)
    total = adversarial + cycle_weight * cycle + identity_weight * identity
    return CycleGANGeneratorLoss(total, adversarial, cycle, identity)


class SRGANGeneratorLoss(NamedTuple):
    """Perceptual loss and its content and adversarial parts."""

    total: jax.Array
    content: jax.Array
    adversarial: jax.Array


def srgan_generator_loss(fake_logits: jax.Array, super_resolved: jax.Array, high_resolution: jax.Array,
                         feature_fn: ImageMap | None = None,
                         adversarial_weight: float | jax.Array = 1e-3,
                         loss: str = "non_saturating") -> SRGANGeneratorLoss:
    """SRGAN perceptual loss (Ledig et al. 2017, eq. 3): ``l_content + 10^-3 l_adversarial``; the content
    loss is the MSE of the pixels (eq. 4) or, with ``feature_fn``, of features such as VGG (eq. 5)."""
    check_weight("adversarial_weight", adversarial_weight)
    _check_same_shape("srgan_generator_loss", super_resolved, high_resolution)
    if feature_fn is not None:
        super_resolved, high_resolution = feature_fn(super_resolved), feature_fn(high_resolution)
    content = jnp.mean((super_resolved - high_resolution) ** 2)
    adversarial = generator_loss(loss, fake_logits)
    return SRGANGeneratorLoss(content + adversarial_weight * adversarial, content, adversarial)
