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


# ---------------------------------------------------------------------------------------------------------
# Offline task construction: paired (edges -> image, masked -> full, low -> high resolution) and unpaired
# (two class sets of one labelled dataset) tasks built from a batch of images on the device.
# ---------------------------------------------------------------------------------------------------------

def sobel_edges(images: jax.Array, threshold: float = 0.5) -> jax.Array:
    """Binary edge map of images ``[B, H, W, C]`` in ``[-1, 1]``: the Sobel gradient magnitude
    ``sqrt(G_x^2 + G_y^2)`` (Sobel & Feldman 1968; kernels ``[1 2 1]^T [-1 0 1]`` and its transpose, zero
    padding, on the channel mean) thresholded at ``threshold``; edges are ``+1``, the rest ``-1``
    (the "edges -> photo" input of Isola et al. 2017, built here without HED)."""
    require(images.ndim == 4, f"sobel_edges expects images [B, H, W, C], got shape {tuple(images.shape)}")
    gray = jnp.mean(images, axis=-1, keepdims=True)
    smooth, diff = jnp.array([1.0, 2.0, 1.0]), jnp.array([-1.0, 0.0, 1.0])
    kx = (smooth[:, None] * diff[None, :])[:, :, None, None].astype(images.dtype)  # d/dx (width)
    ky = (diff[:, None] * smooth[None, :])[:, :, None, None].astype(images.dtype)  # d/dy (height)
    dims = ("NHWC", "HWIO", "NHWC")
    gx = jax.lax.conv_general_dilated(gray, kx, (1, 1), "SAME", dimension_numbers=dims)
    gy = jax.lax.conv_general_dilated(gray, ky, (1, 1), "SAME", dimension_numbers=dims)
    magnitude = jnp.sqrt(gx ** 2 + gy ** 2)
    return jnp.where(magnitude > threshold, 1.0, -1.0).astype(images.dtype)


def random_box_mask(key: jax.Array, batch: int, height: int, width: int, min_frac: float = 0.3,
                    max_frac: float = 0.6) -> jax.Array:
    """One random axis-aligned hole per image (the masked -> full inpainting task; Pathak et al. 2016 use a
    central or random block): mask ``[B, H, W, 1]`` with 0 inside the hole, 1 where pixels are known. The
    hole's side lengths are uniform in ``[min_frac, max_frac]`` of the image side, its position uniform."""
    require(0.0 < min_frac <= max_frac <= 1.0,
            f"need 0 < min_frac <= max_frac <= 1, got min_frac={min_frac}, max_frac={max_frac}")
    k_h, k_w, k_y, k_x = jax.random.split(key, 4)
    hole_h = jnp.round(jax.random.uniform(k_h, (batch,), minval=min_frac, maxval=max_frac) * height)
    hole_w = jnp.round(jax.random.uniform(k_w, (batch,), minval=min_frac, maxval=max_frac) * width)
    top = jnp.floor(jax.random.uniform(k_y, (batch,)) * (height - hole_h + 1))
    left = jnp.floor(jax.random.uniform(k_x, (batch,)) * (width - hole_w + 1))
    rows, cols = jnp.arange(height)[None, :], jnp.arange(width)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + hole_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + hole_w)[:, None])
    hole = in_rows[:, :, None] & in_cols[:, None, :]
    return jnp.where(hole, 0.0, 1.0)[..., None]


def masked_condition(images: jax.Array, mask: jax.Array) -> jax.Array:
    """Input of the inpainting generator: the known pixels (holes filled with 0, the middle of ``[-1, 1]``)
    and the mask itself as an extra channel, ``[B, H, W, C + 1]``."""
    _check_same_shape("masked_condition", images[..., :1], mask)
    return jnp.concatenate([images * mask, mask], axis=-1)


def downsample(images: jax.Array, factor: int) -> jax.Array:
    """Low-resolution input of super-resolution: the mean over ``factor x factor`` blocks (box filter, then
    decimation), ``[B, H, W, C] -> [B, H / factor, W / factor, C]``."""
    b, h, w, c = images.shape
    require(h % factor == 0 and w % factor == 0,
            f"downsample by {factor} needs H and W divisible by it, got {h}x{w}")
    return images.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def bicubic_upsample(images: jax.Array, factor: int) -> jax.Array:
    """The bicubic baseline of super-resolution (Keys 1981 cubic convolution, as in Ledig et al. 2017's
    comparison): ``jax.image.resize(..., "bicubic")`` by ``factor``."""
    b, h, w, c = images.shape
    return jax.image.resize(images, (b, h * factor, w * factor, c), "bicubic")


class UnpairedBatch(NamedTuple):
    """``k`` examples of domain A and ``k`` of domain B with weights (1 for a true member, 0 for filler)."""

    a: jax.Array
    weight_a: jax.Array
    b: jax.Array
    weight_b: jax.Array


def in_classes(label: jax.Array, classes: tuple[int, ...]) -> jax.Array:
    """Boolean ``[B]``: whether each label is one of ``classes``."""
    return jnp.any(label[:, None] == jnp.asarray(classes, label.dtype)[None, :], axis=1)


def unpaired_domains(x: jax.Array, label: jax.Array, classes_a: tuple[int, ...], classes_b: tuple[int, ...],
                     k: int) -> UnpairedBatch:
    """An unpaired two-domain batch from one labelled batch (the CycleGAN set-up of Zhu et al. 2017 on two
    class sets of one dataset): the first ``k`` examples whose label is in ``classes_a`` and the first ``k``
    in ``classes_b`` (static shapes; when fewer exist, the rest are other examples with weight 0)."""
    require(len(classes_a) > 0 and len(classes_b) > 0 and not set(classes_a) & set(classes_b),
            f"domain classes must be non-empty and disjoint, got {classes_a} and {classes_b}")
    require(1 <= k <= x.shape[0], f"domain size k must be in [1, {x.shape[0]}], got {k}")

    def take(member: jax.Array) -> tuple[jax.Array, jax.Array]:
        order = jnp.argsort(jnp.where(member, 0, 1), stable=True)[:k]
        return x[order], member[order].astype(x.dtype)

    a, wa = take(in_classes(label, classes_a))
    b, wb = take(in_classes(label, classes_b))
    return UnpairedBatch(a, wa, b, wb)


def weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
    """``sum_i w_i mean(values_i) / max(sum_i w_i, 1)`` over the leading axis (per-example weights)."""
    per_example = jnp.mean(values.reshape(values.shape[0], -1), axis=-1)
    return jnp.sum(weight * per_example) / jnp.maximum(jnp.sum(weight), 1.0)
