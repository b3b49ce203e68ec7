"""Pix2Pix (Isola et al. 2017): U-Net generator, PatchGAN discriminator of ``(condition, image)``,
``L_cGAN + lambda L1``; ``model.condition='edges'`` (Sobel edges -> image) or ``'inpaint'`` (image with a
random hole, plus the mask -> full image)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice, require
from gm_jax.core.family import DataSpec, Metrics
from gm_jax.gan import tasks
from gm_jax.gan.nets.unet_patchgan import PaddedUNet, PatchGANDiscriminator
from gm_jax.gan.translation.common import Arrays, TaskNets, paired_task

CONDITIONS = ("edges", "inpaint")
DEFAULTS = {"loss": "non_saturating", "condition": "edges", "unet_depth": 3, "patch_layers": 2,
            "l1_weight": 100.0, "edge_threshold": 0.5, "hole_min": 0.3, "hole_max": 0.6}


def check(m: Any, spec: DataSpec) -> None:
    del spec
    check_choice("model.condition", m.condition, CONDITIONS)
    require(float(m.l1_weight) >= 0, f"model.l1_weight must be >= 0, got {m.l1_weight}")
    require(1 <= int(m.unet_depth) <= 5, f"model.unet_depth must be in 1..5, got {m.unet_depth}")


def build(m: Any, spec: DataSpec) -> TaskNets:
    feats, norm = int(m.features), str(m.normalization)
    return TaskNets(m, spec, PaddedUNet(spec.shape[-1], feats, int(m.unet_depth), norm),
                    PatchGANDiscriminator(feats, int(m.patch_layers), norm), str(m.loss))


def condition(nets: TaskNets, x: jax.Array, key: jax.Array) -> jax.Array:
    """Sobel edges of ``x`` (Isola et al. 2017's edges -> photo), or ``x`` with a random box hole drawn
    with ``key`` and the mask as a second channel (inpainting, Pathak et al. 2016)."""
    m = nets.model
    if m.condition == "edges":
        return tasks.sobel_edges(x, float(m.edge_threshold))
    mask = tasks.random_box_mask(key, x.shape[0], x.shape[1], x.shape[2], float(m.hole_min), float(m.hole_max))
    return tasks.masked_condition(x, mask)


def critic(nets: TaskNets, d_params: Any, x: jax.Array, cond: jax.Array) -> jax.Array:
    """PatchGAN logits of the pair ``(condition, image)``."""
    return nets.disc.apply({"params": d_params}, cond, x)


def init_disc(nets: TaskNets, key: jax.Array, cond: jax.Array, x: jax.Array) -> Any:
    return nets.disc.init(key, cond, x)


def g_objective(nets: TaskNets, fakes: Arrays, d_params: Any, inputs: Arrays) -> tuple[jax.Array, Metrics]:
    """Isola et al. 2017, eq. 4: ``L_cGAN(G, D) + lambda E |y - G(x)|``."""
    logits = critic(nets, d_params, fakes["fake"], inputs["condition"])
    out = tasks.pix2pix_generator_loss(logits, fakes["fake"], inputs["target"], float(nets.model.l1_weight),
                                       nets.loss)
    return out.total, {"g_loss": out.total, "g_adversarial": out.adversarial, "l1": out.l1}


def measurement_condition(nets: TaskNets, y: jax.Array, op: Any) -> jax.Array:
    """The inpainting generator's input for y = M ⊙ x of a masking operator: the known pixels (zeros in the
    holes) and the mask, as in training (:func:`gm_jax.gan.tasks.masked_condition`)."""
    require(nets.model.condition == "inpaint", "this Pix2Pix model maps edges to images (model.condition="
            "'edges'), which is no linear measurement; restore with a model trained with model.condition=inpaint")
    mask = op.mask
    require(mask is not None, f"a Pix2Pix inpainting model fills masked pixels, not operator {op.name!r}; "
            "pass --task inpaint")
    mask = jnp.asarray(mask, jnp.float32)
    require(bool(jnp.all(mask == mask[..., :1])), "the mask differs between channels; the inpainting model "
            "takes one mask for all channels")
    mask = jnp.broadcast_to(mask[..., :1], y.shape[:-1] + (1,))
    return tasks.masked_condition(y * mask, mask)


TASK = paired_task("pix2pix", DEFAULTS, check, build, condition, critic, init_disc, g_objective,
                   measurement_condition=measurement_condition)
