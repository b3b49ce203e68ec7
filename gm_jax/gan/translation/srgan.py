"""SRGAN (Ledig et al. 2017): residual generator with sub-pixel upsampling by ``model.scale`` from the
box-downsampled image, DCGAN-style discriminator, content loss = pixel MSE + ``feature_weight`` x MSE of
feature maps of the shipped Fashion-MNIST/MNIST classifier (our stand-in for VGG), + ``adversarial_weight``
x adversarial loss."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import require
from gm_jax.core.family import Batch, DataSpec, Metrics
from gm_jax.gan import tasks
from gm_jax.gan.nets.dcgan import DCGANDiscriminator
from gm_jax.gan.nets.srgan import SRGANGenerator
from gm_jax.gan.translation.common import Arrays, TaskNets, paired_evaluate, paired_task
from gm_jax.metrics.image_quality import psnr

DEFAULTS = {"loss": "non_saturating", "scale": 2, "num_blocks": 4, "pixel_weight": 1.0,
            "feature_weight": 0.1, "adversarial_weight": 1e-3, "extractor": "fashion_mnist_cnn"}


def check(m: Any, spec: DataSpec) -> None:
    require(int(m.scale) in (2, 4), f"model.scale must be 2 or 4, got {m.scale}")
    require(spec.shape[0] % int(m.scale) == 0 and spec.shape[1] % int(m.scale) == 0,
            f"image side {spec.shape[:2]} must divide by model.scale={m.scale}")
    for name in ("pixel_weight", "feature_weight", "adversarial_weight"):
        require(float(m[name]) >= 0, f"model.{name} must be >= 0, got {m[name]}")
    if float(m.feature_weight) > 0:
        require(tuple(spec.shape) == (28, 28, 1) and tuple(spec.value_range) == (-1.0, 1.0),
                f"the feature content loss needs 28x28x1 images in [-1, 1] (the shipped classifier's "
                f"input), got {spec.shape} in {spec.value_range}; set model.feature_weight=0")


def content_features(extractor: str) -> Any:
    """``phi(x)``: ReLU feature maps of the second convolution (14x14x64) of the shipped classifier
    ``extractor`` (Ledig et al. 2017, eq. 5 use VGG's phi_{5,4}; VGG weights cannot be downloaded here), a
    differentiable function of images ``[B, 28, 28, 1]`` in [-1, 1]."""
    from gm_jax.metrics.features import SmallCNN, load_feature_extractor

    fx = load_feature_extractor(extractor)
    params, net = fx.params, SmallCNN(feature_dim=fx.feature_dim)

    def phi(x: jax.Array) -> jax.Array:
        _, state = net.apply({"params": params}, x, capture_intermediates=True,
                             mutable=["intermediates"])
        return nn.relu(state["intermediates"]["Conv_1"]["__call__"][0])

    return phi


def build(m: Any, spec: DataSpec) -> TaskNets:
    feats, norm = int(m.features), str(m.normalization)
    gen = SRGANGenerator(int(m.scale), spec.shape[-1], feats, int(m.num_blocks))
    disc = DCGANDiscriminator(feats, 0, "layer" if norm == "instance" else norm)
    phi = content_features(str(m.extractor)) if float(m.feature_weight) > 0 else None
    return TaskNets(m, spec, gen, disc, str(m.loss), phi)


def condition(nets: TaskNets, x: jax.Array, key: jax.Array) -> jax.Array:
    """The low-resolution input: ``x`` box-downsampled by ``model.scale``."""
    del key
    return tasks.downsample(x, int(nets.model.scale))


def critic(nets: TaskNets, d_params: Any, x: jax.Array, cond: jax.Array) -> jax.Array:
    """Unconditional DCGAN logits of the (super-resolved or real) image."""
    del cond
    return nets.disc.apply({"params": d_params}, x)


def init_disc(nets: TaskNets, key: jax.Array, cond: jax.Array, x: jax.Array) -> Any:
    del cond
    return nets.disc.init(key, x)


def g_objective(nets: TaskNets, fakes: Arrays, d_params: Any, inputs: Arrays) -> tuple[jax.Array, Metrics]:
    """Ledig et al. 2017, eq. 3-5: content (pixel MSE + feature-map MSE) + 1e-3 adversarial."""
    m, phi, fake = nets.model, nets.features, fakes["fake"]
    logits = critic(nets, d_params, fake, inputs["condition"])
    pixel = jnp.mean((fake - inputs["target"]) ** 2)
    feature = jnp.mean((phi(fake) - phi(inputs["target"])) ** 2) if phi is not None else jnp.zeros(())
    adversarial = tasks.generator_loss(nets.loss, logits)
    total = (float(m.pixel_weight) * pixel + float(m.feature_weight) * feature
             + float(m.adversarial_weight) * adversarial)
    return total, {"g_loss": total, "g_adversarial": adversarial, "pixel_mse": pixel, "feature_mse": feature}


def evaluate(nets: TaskNets, params: Any, batch: Batch, key: jax.Array) -> Metrics:
    """L1 and PSNR of the super-resolved images, and the PSNR of the bicubic baseline."""
    out = dict(paired_evaluate(condition, nets, params, batch, key))
    low = condition(nets, batch["x"], key)
    out["psnr_bicubic"] = jnp.mean(psnr(tasks.bicubic_upsample(low, int(nets.model.scale)), batch["x"]))
    return out


def measurement_condition(nets: TaskNets, y: jax.Array, op: Any) -> jax.Array:
    """The low-resolution image itself, once ``op`` is checked (on a probe image) to be the model's own
    ×``model.scale`` box downsampling."""
    scale = int(nets.model.scale)
    probe = jnp.asarray(np.random.RandomState(0).rand(1, *nets.spec.shape), jnp.float32)
    same = tuple(op.y_shape) == tuple(condition(nets, probe, None).shape[1:]) and bool(
        jnp.allclose(op.A(probe), condition(nets, probe, None), atol=1e-5))
    require(same, f"this SRGAN super-resolves x{scale} average pooling (model.scale), not operator {op.name!r}; "
            f"pass --task superres --scale {scale}")
    return y


TASK = paired_task("srgan", DEFAULTS, check, build, condition, critic, init_disc, g_objective,
                   evaluate=evaluate, measurement_condition=measurement_condition)
