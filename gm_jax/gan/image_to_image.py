"""Image-to-image GANs behind the common Family protocol: Pix2Pix, CycleGAN and SRGAN on tasks built offline
from a labelled image dataset (see the task constructors in :mod:`gm_jax.gan.tasks`).

``config.model.task`` selects the task (``config.model.family`` stays ``"gan"``):

- ``pix2pix`` (Isola et al. 2017): U-Net generator, PatchGAN discriminator of ``(condition, image)``,
  ``L_cGAN + lambda L1``; ``model.condition='edges'`` (Sobel edges -> image) or ``'inpaint'`` (image with a
  random hole, plus the mask -> full image).
- ``cyclegan`` (Zhu et al. 2017): ResNet generators ``G: A -> B``, ``F: B -> A``, PatchGAN discriminators
  ``D_A``, ``D_B``, least-squares adversarial + ``lambda_cyc`` cycle + ``lambda_id`` identity losses; the
  domains are two class sets of one dataset (``model.domain_a``, ``model.domain_b``), unpaired.
- ``srgan`` (Ledig et al. 2017): residual generator with sub-pixel upsampling by ``model.scale`` from the
  box-downsampled image, DCGAN-style discriminator, content loss = pixel MSE + ``feature_weight`` x MSE of
  feature maps of the shipped Fashion-MNIST/MNIST classifier (our stand-in for VGG), + ``adversarial_weight``
  x adversarial loss.

Each step computes the generator outputs once (``jax.vjp``), updates the discriminator(s) on them with the
generator fixed, then back-propagates the generator loss under the updated discriminator through the same
outputs. ``params``/``opt_state`` are ``{"generator": ..., "discriminator": ...}`` (CycleGAN nests two
networks in each). ``sample(params, key, num, source=None)`` translates ``source`` images (default: the first
``num`` images of the eval split, of domain A for CycleGAN); ``evaluate`` reports L1 / PSNR (SRGAN also the
bicubic PSNR; CycleGAN the cycle L1) on eval batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gm_jax.core.errors import check_choice, require
from gm_jax.core.family import Batch, DataSpec, Family, Metrics
from gm_jax.core.optim import make_optimizer
from gm_jax.core.state import TrainState
from gm_jax.gan import model as gan_model
from gm_jax.gan import tasks
from gm_jax.gan.losses import LOSSES, get_loss

TASKS = ("pix2pix", "cyclegan", "srgan")
CONDITIONS = ("edges", "inpaint")
NETS = ("generator", "discriminator")


def model_defaults(task: str = "pix2pix") -> ml_collections.ConfigDict:
    """Defaults of ``config.model`` for image-to-image task ``task`` (one of :data:`TASKS`).

    Shared: features (base width), loss (adversarial loss name), normalization ('instance' / 'layer' /
    'none'). pix2pix: condition, unet_depth (images are padded to a multiple of ``2^depth``),
    patch_layers, l1_weight (lambda, 100 in the paper), edge_threshold, hole_min/hole_max. cyclegan:
    domain_a/domain_b (class tuples), domain_size (examples per domain per step), num_blocks, cycle_weight
    (10), identity_weight (5 = 0.5 lambda). srgan: scale (2 or 4), num_blocks, pixel_weight,
    feature_weight, adversarial_weight (1e-3), extractor (shipped feature network of the content loss).
    """
    check_choice("task", task, TASKS)
    common = {"family": "gan", "task": task, "features": 32, "normalization": "instance"}
    per_task = {
        "pix2pix": {"loss": "non_saturating", "condition": "edges", "unet_depth": 3, "patch_layers": 2,
                    "l1_weight": 100.0, "edge_threshold": 0.5, "hole_min": 0.3, "hole_max": 0.6},
        "cyclegan": {"loss": "least_squares", "domain_a": (7,), "domain_b": (9,), "domain_size": 16,
                     "num_blocks": 3, "patch_layers": 2, "cycle_weight": 10.0, "identity_weight": 5.0},
        "srgan": {"loss": "non_saturating", "scale": 2, "num_blocks": 4, "pixel_weight": 1.0,
                  "feature_weight": 0.1, "adversarial_weight": 1e-3, "extractor": "fashion_mnist_cnn"},
    }[task]
    return ml_collections.ConfigDict({**common, **per_task})


def _pad_to_multiple(x: jax.Array, multiple: int, value: float) -> tuple[jax.Array, tuple[int, int]]:
    """Pad H and W symmetrically with ``value`` up to the next multiple; returns the padding (top, left)."""
    h, w = x.shape[1], x.shape[2]
    ph, pw = (-h) % multiple, (-w) % multiple
    top, left = ph // 2, pw // 2
    padded = jnp.pad(x, ((0, 0), (top, ph - top), (left, pw - left), (0, 0)), constant_values=value)
    return padded, (top, left)


class PaddedUNet(nn.Module):
    """:class:`gm_jax.gan.model.UNetGenerator` on images padded (with the background value -1) to a multiple
    of ``2^depth`` and cropped back, so 28x28 images can use a depth-3 U-Net."""

    out_channels: int
    features: int
    depth: int
    normalization: str

    @nn.compact
    def __call__(self, condition: jax.Array) -> jax.Array:
        h, w = condition.shape[1:3]
        padded, (top, left) = _pad_to_multiple(condition, 2 ** self.depth, -1.0)
        out = gan_model.UNetGenerator(self.out_channels, self.features, self.depth, self.normalization,
                                      name="unet")(padded)
        return out[:, top:top + h, left:left + w]


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


def _check_config(m: Any, spec: DataSpec) -> None:
    check_choice("model.task", m.task, TASKS)
    check_choice("model.loss", m.loss, LOSSES)
    require(spec.is_image, f"model.task={m.task!r} needs image data [H, W, C], got shape {spec.shape}")
    require(int(m.features) >= 1, f"model.features must be >= 1, got {m.features}")
    check_choice("model.normalization", m.normalization, ("instance", "layer", "none"))
    if m.task == "pix2pix":
        check_choice("model.condition", m.condition, CONDITIONS)
        require(float(m.l1_weight) >= 0, f"model.l1_weight must be >= 0, got {m.l1_weight}")
        require(1 <= int(m.unet_depth) <= 5, f"model.unet_depth must be in 1..5, got {m.unet_depth}")
    elif m.task == "cyclegan":
        require(spec.num_classes > 0, "model.task='cyclegan' builds its two domains from class labels; use a "
                "labelled dataset")
        for name in ("domain_a", "domain_b"):
            classes = tuple(m[name])
            require(len(classes) > 0 and all(0 <= int(c) < spec.num_classes for c in classes),
                    f"model.{name} must be a non-empty tuple of classes in [0, {spec.num_classes}), got {classes}")
        require(not set(m.domain_a) & set(m.domain_b),
                f"model.domain_a {tuple(m.domain_a)} and domain_b {tuple(m.domain_b)} must be disjoint")
        require(float(m.cycle_weight) >= 0 and float(m.identity_weight) >= 0,
                "model.cycle_weight and model.identity_weight must be >= 0")
        require(spec.shape[0] % 4 == 0 and spec.shape[1] % 4 == 0,
                f"the CycleGAN generator needs H and W divisible by 4, got {spec.shape[:2]}")
    else:
        require(int(m.scale) in (2, 4), f"model.scale must be 2 or 4, got {m.scale}")
        require(spec.shape[0] % int(m.scale) == 0 and spec.shape[1] % int(m.scale) == 0,
                f"image side {spec.shape[:2]} must divide by model.scale={m.scale}")
        for name in ("pixel_weight", "feature_weight", "adversarial_weight"):
            require(float(m[name]) >= 0, f"model.{name} must be >= 0, got {m[name]}")
        if float(m.feature_weight) > 0:
            require(tuple(spec.shape) == (28, 28, 1) and tuple(spec.value_range) == (-1.0, 1.0),
                    f"the feature content loss needs 28x28x1 images in [-1, 1] (the shipped classifier's "
                    f"input), got {spec.shape} in {spec.value_range}; set model.feature_weight=0")


def _no_condition(x: jax.Array) -> jax.Array:
    """A zero-channel condition: the PatchGAN of a pair becomes the unconditional PatchGAN of CycleGAN."""
    return jnp.zeros(x.shape[:3] + (0,), x.dtype)


def make_family(config: Any, spec: DataSpec, eval_batches: Callable[[int], Iterator[Batch]] | None = None
                ) -> Family:
    """Build the Pix2Pix, CycleGAN or SRGAN family from ``config.model`` (see :func:`model_defaults`) and
    ``config.optim`` (one optimizer per group, as in :mod:`gm_jax.gan.family`; ``model.generator_lr`` /
    ``discriminator_lr`` > 0 override the learning rate, TTUR). ``eval_batches`` (``batch_size -> iterator
    of eval batches``, given by the training loop) supplies the default source images of ``sample``;
    without it ``sample`` needs ``source``."""
    m = config.model
    _check_config(m, spec)
    task, loss_name = str(m.task), str(m.loss)
    loss_fn = get_loss(loss_name)
    channels = spec.shape[-1]
    feats, norm = int(m.features), str(m.normalization)

    def optimizer(lr_field: str) -> optax.GradientTransformation:
        cfg = ml_collections.ConfigDict(dict(config.optim.items()))
        if float(m.get(lr_field, 0.0)) > 0:
            cfg.learning_rate = float(m[lr_field])
        return make_optimizer(cfg)

    txs = {"generator": optimizer("generator_lr"), "discriminator": optimizer("discriminator_lr")}

    # ---- networks ------------------------------------------------------------------------------------
    if task == "pix2pix":
        gen = PaddedUNet(channels, feats, int(m.unet_depth), norm)
        disc = gan_model.PatchGANDiscriminator(feats, int(m.patch_layers), norm)
    elif task == "cyclegan":
        gen = gan_model.CycleGANGenerator(channels, feats, 2, int(m.num_blocks), norm)
        disc = gan_model.PatchGANDiscriminator(feats, int(m.patch_layers), norm)
    else:
        scale = int(m.scale)
        gen = gan_model.SRGANGenerator(scale, channels, feats, int(m.num_blocks))
        disc = gan_model.DCGANDiscriminator(feats, 0, "layer" if norm == "instance" else norm)
        phi = content_features(str(m.extractor)) if float(m.feature_weight) > 0 else None

    # ---- task inputs from a batch --------------------------------------------------------------------
    def condition_of(x: jax.Array, key: jax.Array) -> jax.Array:
        """The generator input of a paired task built from target images ``x`` (mask drawn with ``key``)."""
        if task == "srgan":
            return tasks.downsample(x, scale)
        if m.condition == "edges":
            return tasks.sobel_edges(x, float(m.edge_threshold))
        mask = tasks.random_box_mask(key, x.shape[0], x.shape[1], x.shape[2], float(m.hole_min),
                                     float(m.hole_max))
        return tasks.masked_condition(x, mask)

    def inputs_of(batch: Batch, key: jax.Array) -> dict[str, jax.Array]:
        x = batch["x"]
        if task != "cyclegan":
            return {"condition": condition_of(x, key), "target": x}
        require("label" in batch, "model.task='cyclegan' needs batches with a 'label' entry")
        k = min(int(m.domain_size), x.shape[0])
        dom = tasks.unpaired_domains(x, batch["label"], tuple(m.domain_a), tuple(m.domain_b), k)
        return {"a": dom.a, "weight_a": dom.weight_a, "b": dom.b, "weight_b": dom.weight_b}

    # ---- generator outputs, discriminator and generator objectives ------------------------------------
    def generate(g_params: Any, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        if task != "cyclegan":
            return {"fake": gen.apply({"params": g_params}, inputs["condition"])}
        g_ab = lambda v: gen.apply({"params": g_params["g_ab"]}, v)  # noqa: E731
        g_ba = lambda v: gen.apply({"params": g_params["g_ba"]}, v)  # noqa: E731
        fake_b, fake_a = g_ab(inputs["a"]), g_ba(inputs["b"])
        return {"fake_b": fake_b, "fake_a": fake_a, "cycle_a": g_ba(fake_b), "cycle_b": g_ab(fake_a),
                "same_b": g_ab(inputs["b"]), "same_a": g_ba(inputs["a"])}

    def critic(d_params: Any, x: jax.Array, condition: jax.Array | None = None) -> jax.Array:
        if task == "pix2pix":
            return disc.apply({"params": d_params}, condition, x)
        if task == "cyclegan":
            return disc.apply({"params": d_params}, _no_condition(x), x)
        return disc.apply({"params": d_params}, x)

    def per_example(values: jax.Array) -> jax.Array:
        return values.reshape(values.shape[0], -1)

    def d_objective(d_params: Any, inputs: dict[str, jax.Array], fakes: dict[str, jax.Array]
                    ) -> tuple[jax.Array, Metrics]:
        if task != "cyclegan":
            cond = inputs["condition"] if task == "pix2pix" else None
            out = loss_fn(critic(d_params, inputs["target"], cond), critic(d_params, fakes["fake"], cond))
            return out.d_loss, {"d_loss": out.d_loss, "d_real": out.d_real, "d_fake": out.d_fake}
        # Each discriminator sees its domain's real examples (weighted) and the other generator's outputs.
        total, metrics = 0.0, {}
        for name, real, w_real, fake, w_fake in (("d_a", inputs["a"], inputs["weight_a"], fakes["fake_a"],
                                                  inputs["weight_b"]),
                                                 ("d_b", inputs["b"], inputs["weight_b"], fakes["fake_b"],
                                                  inputs["weight_a"])):
            real_logits, fake_logits = critic(d_params[name], real), critic(d_params[name], fake)
            # the loss is an average over logits; apply it per example and weight the examples
            d_real = jax.vmap(lambda r: loss_fn(r, jnp.zeros_like(r)).d_real)(per_example(real_logits))
            d_fake = jax.vmap(lambda f: loss_fn(jnp.zeros_like(f), f).d_fake)(per_example(fake_logits))
            part = tasks.weighted_mean(d_real, w_real) + tasks.weighted_mean(d_fake, w_fake)
            total, metrics[f"{name}_loss"] = total + part, part
        metrics["d_loss"] = total
        return total, metrics

    def g_objective(fakes: dict[str, jax.Array], d_params: Any, inputs: dict[str, jax.Array]
                    ) -> tuple[jax.Array, Metrics]:
        if task == "pix2pix":
            logits = critic(d_params, fakes["fake"], inputs["condition"])
            out = tasks.pix2pix_generator_loss(logits, fakes["fake"], inputs["target"], float(m.l1_weight),
                                               loss_name)
            return out.total, {"g_loss": out.total, "g_adversarial": out.adversarial, "l1": out.l1}
        if task == "srgan":
            logits = critic(d_params, fakes["fake"])
            pixel = jnp.mean((fakes["fake"] - inputs["target"]) ** 2)
            # Ledig et al. 2017, eq. 3-5: content (pixel MSE + feature-map MSE) + 1e-3 adversarial
            feature = (jnp.mean((phi(fakes["fake"]) - phi(inputs["target"])) ** 2) if phi is not None
                       else jnp.zeros(()))
            adversarial = tasks.generator_loss(loss_name, logits)
            total = (float(m.pixel_weight) * pixel + float(m.feature_weight) * feature
                     + float(m.adversarial_weight) * adversarial)
            return total, {"g_loss": total, "g_adversarial": adversarial, "pixel_mse": pixel,
                           "feature_mse": feature}
        wa, wb = inputs["weight_a"], inputs["weight_b"]
        adv = []
        for name, fake, w in (("d_b", fakes["fake_b"], wa), ("d_a", fakes["fake_a"], wb)):
            logits = per_example(critic(d_params[name], fake))
            adv.append(tasks.weighted_mean(jax.vmap(lambda f: tasks.generator_loss(loss_name, f))(logits), w))
        abs_err = lambda u, v: jnp.abs(u - v)  # noqa: E731
        cycle = (tasks.weighted_mean(abs_err(fakes["cycle_a"], inputs["a"]), wa)
                 + tasks.weighted_mean(abs_err(fakes["cycle_b"], inputs["b"]), wb))
        identity = (tasks.weighted_mean(abs_err(fakes["same_b"], inputs["b"]), wb)
                    + tasks.weighted_mean(abs_err(fakes["same_a"], inputs["a"]), wa))
        # Zhu et al. 2017, eq. 3: L_GAN(G, D_B) + L_GAN(F, D_A) + lambda L_cyc (+ lambda_id L_identity)
        total = adv[0] + adv[1] + float(m.cycle_weight) * cycle + float(m.identity_weight) * identity
        return total, {"g_loss": total, "g_adversarial": adv[0] + adv[1], "cycle_l1": cycle,
                       "identity_l1": identity}

    # ---- protocol ------------------------------------------------------------------------------------
    def init(key: jax.Array, example_batch: Batch) -> TrainState:
        x = jnp.asarray(example_batch["x"])
        require(tuple(x.shape[1:]) == tuple(spec.shape),
                f"batch x has example shape {tuple(x.shape[1:])}, the spec says {tuple(spec.shape)}")
        k_g, k_d, k_in = jax.random.split(jax.random.fold_in(key, 0), 3)
        if task == "cyclegan":
            ka, kb = jax.random.split(k_g)
            params = {"generator": {"g_ab": gen.init(ka, x)["params"], "g_ba": gen.init(kb, x)["params"]},
                      "discriminator": {"d_a": disc.init(jax.random.fold_in(k_d, 0), _no_condition(x), x)["params"],
                                        "d_b": disc.init(jax.random.fold_in(k_d, 1), _no_condition(x), x)["params"]}}
        else:
            cond = condition_of(x, k_in)
            d_init = disc.init(k_d, cond, x) if task == "pix2pix" else disc.init(k_d, x)
            params = {"generator": gen.init(k_g, cond)["params"], "discriminator": d_init["params"]}
        opt_state = {name: txs[name].init(params[name]) for name in NETS}
        return TrainState(step=jnp.zeros((), jnp.int32), rng=key, params=params, opt_state=opt_state)

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        inputs = inputs_of(batch, key)
        g_params, d_params = state.params["generator"], state.params["discriminator"]
        fakes, g_vjp = jax.vjp(lambda g: generate(g, inputs), g_params)
        d_grads, d_metrics = jax.grad(d_objective, has_aux=True)(d_params, inputs,
                                                                 jax.lax.stop_gradient(fakes))
        d_updates, d_opt = txs["discriminator"].update(d_grads, state.opt_state["discriminator"], d_params)
        d_params = optax.apply_updates(d_params, d_updates)
        fake_grads, g_metrics = jax.grad(g_objective, has_aux=True)(fakes, d_params, inputs)
        (g_grads,) = g_vjp(fake_grads)
        g_updates, g_opt = txs["generator"].update(g_grads, state.opt_state["generator"], g_params)
        params = {"generator": optax.apply_updates(g_params, g_updates), "discriminator": d_params}
        new_state = state.replace(step=state.step + 1, params=params,
                                  opt_state={"generator": g_opt, "discriminator": d_opt})
        return new_state, {**d_metrics, **g_metrics}

    def evaluate(params: Any, batch: Batch, key: jax.Array) -> Metrics:
        """pix2pix / srgan: mean L1 and PSNR (dB, range 2) of ``G(condition)`` against the target (srgan
        also the bicubic baseline's PSNR); cyclegan: cycle L1 ``|F(G(a)) - a|`` and ``|G(F(b)) - b|``."""
        x = batch["x"]
        g = params["generator"]
        if task == "cyclegan":
            wa = tasks.in_classes(batch["label"], tuple(m.domain_a)).astype(x.dtype)
            wb = tasks.in_classes(batch["label"], tuple(m.domain_b)).astype(x.dtype)
            g_ab = lambda v: gen.apply({"params": g["g_ab"]}, v)  # noqa: E731
            g_ba = lambda v: gen.apply({"params": g["g_ba"]}, v)  # noqa: E731
            return {"cycle_l1_a": tasks.weighted_mean(jnp.abs(g_ba(g_ab(x)) - x), wa),
                    "cycle_l1_b": tasks.weighted_mean(jnp.abs(g_ab(g_ba(x)) - x), wb)}
        cond = condition_of(x, key)
        fake = gen.apply({"params": g}, cond)
        out = {"l1": jnp.mean(jnp.abs(fake - x)), "psnr": jnp.mean(tasks.psnr(fake, x))}
        if task == "srgan":
            out["psnr_bicubic"] = jnp.mean(tasks.psnr(tasks.bicubic_upsample(cond, scale), x))
        return out

    translate = jax.jit(lambda g, v, k: generate_one(g, v, k))

    def generate_one(g_params: Any, x: jax.Array, key: jax.Array, direction: str = "a_to_b") -> jax.Array:
        if task == "cyclegan":
            return gen.apply({"params": g_params["g_ab" if direction == "a_to_b" else "g_ba"]}, x)
        return gen.apply({"params": g_params}, condition_of(x, key))

    translate_ba = jax.jit(lambda g, v, k: generate_one(g, v, k, "b_to_a"))
    source_cache: dict[tuple[int, str], np.ndarray] = {}

    def default_source(num: int, direction: str) -> np.ndarray:
        """The first ``num`` eval images (of the source domain for CycleGAN), prepared as in training."""
        if (num, direction) not in source_cache:
            require(eval_batches is not None, "this family was built without eval data; pass source images "
                    "[num, H, W, C] to sample")
            classes = None
            if task == "cyclegan":
                classes = tuple(m.domain_a if direction == "a_to_b" else m.domain_b)
            chunks, have = [], 0
            for b in eval_batches(500):
                x = b["x"] if classes is None else b["x"][np.isin(b["label"], classes)]
                chunks.append(x)
                have += len(x)
                if have >= num:
                    break
            x = np.concatenate(chunks)[:num]
            require(len(x) == num, f"the eval split has only {len(x)} source images; lower num")
            source_cache[(num, direction)] = x
        return source_cache[(num, direction)]

    def sample(params: Any, key: jax.Array, num: int, source: Any = None, direction: str = "a_to_b"
               ) -> tuple[jax.Array, dict[str, Any]]:
        """Translate ``num`` source images (``source`` ``[num, H, W, C]``, default the first ``num`` eval
        images; CycleGAN: of the source domain of ``direction`` 'a_to_b' or 'b_to_a'). For pix2pix /
        srgan the images are targets from which the condition is built (inpainting holes drawn with
        ``key``); returns the generated images and ``info["nfe"] = 1``."""
        require(int(num) >= 1, f"num must be >= 1, got {num}")
        check_choice("direction", direction, ("a_to_b", "b_to_a"))
        x = default_source(int(num), direction) if source is None else np.asarray(source, np.float32)
        require(x.shape == (int(num), *spec.shape),
                f"source must have shape {(int(num), *spec.shape)}, got {tuple(x.shape)}")
        fn = translate_ba if direction == "b_to_a" else translate
        return fn(params["generator"], jnp.asarray(x), key), {"nfe": 1}

    return Family(name=f"gan_{task}", init=init, train_step=train_step, sample=sample, evaluate=evaluate)
