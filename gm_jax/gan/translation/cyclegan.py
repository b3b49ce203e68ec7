"""CycleGAN (Zhu et al. 2017): ResNet generators ``G: A -> B``, ``F: B -> A``, PatchGAN discriminators
``D_A``, ``D_B``, least-squares adversarial + ``lambda_cyc`` cycle + ``lambda_id`` identity losses; the
domains are two class sets of one dataset (``model.domain_a``, ``model.domain_b``), unpaired.

``params["generator"]`` is ``{"g_ab", "g_ba"}``, ``params["discriminator"]`` ``{"d_a", "d_b"}``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gm_jax.core.errors import require
from gm_jax.core.family import Batch, DataSpec, Metrics
from gm_jax.core.options import Option
from gm_jax.gan import tasks
from gm_jax.gan.losses import get_loss
from gm_jax.gan.nets.cyclegan import CycleGANGenerator
from gm_jax.gan.nets.unet_patchgan import PatchGANDiscriminator
from gm_jax.gan.translation.common import Arrays, ImageTask, TaskNets

DIRECTIONS = ("a_to_b", "b_to_a")
DIRECTION = Option("direction", "str", "CycleGAN translation: a_to_b uses G on domain A, b_to_a uses F on "
                   "domain B", default="a_to_b", choices=DIRECTIONS)
DEFAULTS = {"loss": "least_squares", "domain_a": (7,), "domain_b": (9,), "domain_size": 16,
            "num_blocks": 3, "patch_layers": 2, "cycle_weight": 10.0, "identity_weight": 5.0}


def check(m: Any, spec: DataSpec) -> None:
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


def build(m: Any, spec: DataSpec) -> TaskNets:
    feats, norm = int(m.features), str(m.normalization)
    return TaskNets(m, spec, CycleGANGenerator(spec.shape[-1], feats, 2, int(m.num_blocks), norm),
                    PatchGANDiscriminator(feats, int(m.patch_layers), norm), str(m.loss))


def no_condition(x: jax.Array) -> jax.Array:
    """A zero-channel condition: the PatchGAN of a pair becomes the unconditional PatchGAN of CycleGAN."""
    return jnp.zeros(x.shape[:3] + (0,), x.dtype)


def critic(nets: TaskNets, d_params: Any, x: jax.Array) -> jax.Array:
    return nets.disc.apply({"params": d_params}, no_condition(x), x)


def per_example(values: jax.Array) -> jax.Array:
    return values.reshape(values.shape[0], -1)


def init_params(nets: TaskNets, key: jax.Array, x: jax.Array) -> dict[str, Any]:
    k_g, k_d, _ = jax.random.split(key, 3)
    ka, kb = jax.random.split(k_g)
    d_init = lambda i: nets.disc.init(jax.random.fold_in(k_d, i), no_condition(x), x)["params"]  # noqa: E731
    return {"generator": {"g_ab": nets.gen.init(ka, x)["params"], "g_ba": nets.gen.init(kb, x)["params"]},
            "discriminator": {"d_a": d_init(0), "d_b": d_init(1)}}


def inputs_of(nets: TaskNets, batch: Batch, key: jax.Array) -> Arrays:
    """Two unpaired domain batches from one labelled batch (:func:`gm_jax.gan.tasks.unpaired_domains`)."""
    del key
    m, x = nets.model, batch["x"]
    require("label" in batch, "model.task='cyclegan' needs batches with a 'label' entry")
    k = min(int(m.domain_size), x.shape[0])
    dom = tasks.unpaired_domains(x, batch["label"], tuple(m.domain_a), tuple(m.domain_b), k)
    return {"a": dom.a, "weight_a": dom.weight_a, "b": dom.b, "weight_b": dom.weight_b}


def generate(nets: TaskNets, g_params: Any, inputs: Arrays) -> Arrays:
    """``G(a)``, ``F(b)``, the cycles ``F(G(a))``, ``G(F(b))`` and the identities ``G(b)``, ``F(a)``."""
    g_ab = lambda v: nets.gen.apply({"params": g_params["g_ab"]}, v)  # noqa: E731
    g_ba = lambda v: nets.gen.apply({"params": g_params["g_ba"]}, v)  # noqa: E731
    fake_b, fake_a = g_ab(inputs["a"]), g_ba(inputs["b"])
    return {"fake_b": fake_b, "fake_a": fake_a, "cycle_a": g_ba(fake_b), "cycle_b": g_ab(fake_a),
            "same_b": g_ab(inputs["b"]), "same_a": g_ba(inputs["a"])}


def d_objective(nets: TaskNets, d_params: Any, inputs: Arrays, fakes: Arrays) -> tuple[jax.Array, Metrics]:
    """Each discriminator sees its domain's real examples (weighted) and the other generator's outputs."""
    loss_fn = get_loss(nets.loss)
    total, metrics = 0.0, {}
    for name, real, w_real, fake, w_fake in (("d_a", inputs["a"], inputs["weight_a"], fakes["fake_a"],
                                              inputs["weight_b"]),
                                             ("d_b", inputs["b"], inputs["weight_b"], fakes["fake_b"],
                                              inputs["weight_a"])):
        real_logits, fake_logits = critic(nets, d_params[name], real), critic(nets, d_params[name], fake)
        # the loss is an average over logits; apply it per example and weight the examples
        d_real = jax.vmap(lambda r: loss_fn(r, jnp.zeros_like(r)).d_real)(per_example(real_logits))
        d_fake = jax.vmap(lambda f: loss_fn(jnp.zeros_like(f), f).d_fake)(per_example(fake_logits))
        part = tasks.weighted_mean(d_real, w_real) + tasks.weighted_mean(d_fake, w_fake)
        total, metrics[f"{name}_loss"] = total + part, part
    metrics["d_loss"] = total
    return total, metrics


def g_objective(nets: TaskNets, fakes: Arrays, d_params: Any, inputs: Arrays) -> tuple[jax.Array, Metrics]:
    """Zhu et al. 2017, eq. 3: ``L_GAN(G, D_B) + L_GAN(F, D_A) + lambda L_cyc (+ lambda_id L_identity)``."""
    m, wa, wb = nets.model, inputs["weight_a"], inputs["weight_b"]
    adv = []
    for name, fake, w in (("d_b", fakes["fake_b"], wa), ("d_a", fakes["fake_a"], wb)):
        logits = per_example(critic(nets, d_params[name], fake))
        adv.append(tasks.weighted_mean(jax.vmap(lambda f: tasks.generator_loss(nets.loss, f))(logits), w))
    abs_err = lambda u, v: jnp.abs(u - v)  # noqa: E731
    cycle = (tasks.weighted_mean(abs_err(fakes["cycle_a"], inputs["a"]), wa)
             + tasks.weighted_mean(abs_err(fakes["cycle_b"], inputs["b"]), wb))
    identity = (tasks.weighted_mean(abs_err(fakes["same_b"], inputs["b"]), wb)
                + tasks.weighted_mean(abs_err(fakes["same_a"], inputs["a"]), wa))
    total = adv[0] + adv[1] + float(m.cycle_weight) * cycle + float(m.identity_weight) * identity
    return total, {"g_loss": total, "g_adversarial": adv[0] + adv[1], "cycle_l1": cycle, "identity_l1": identity}


def evaluate(nets: TaskNets, params: Any, batch: Batch, key: jax.Array) -> Metrics:
    """Cycle L1 ``|F(G(a)) - a|`` over domain-A images and ``|G(F(b)) - b|`` over domain-B images."""
    del key
    m, x, g = nets.model, batch["x"], params["generator"]
    wa = tasks.in_classes(batch["label"], tuple(m.domain_a)).astype(x.dtype)
    wb = tasks.in_classes(batch["label"], tuple(m.domain_b)).astype(x.dtype)
    g_ab = lambda v: nets.gen.apply({"params": g["g_ab"]}, v)  # noqa: E731
    g_ba = lambda v: nets.gen.apply({"params": g["g_ba"]}, v)  # noqa: E731
    return {"cycle_l1_a": tasks.weighted_mean(jnp.abs(g_ba(g_ab(x)) - x), wa),
            "cycle_l1_b": tasks.weighted_mean(jnp.abs(g_ab(g_ba(x)) - x), wb)}


def translate(nets: TaskNets, g_params: Any, x: jax.Array, key: jax.Array, direction: str = "a_to_b"
              ) -> jax.Array:
    """``G(x)`` (a_to_b) or ``F(x)`` (b_to_a)."""
    del key
    return nets.gen.apply({"params": g_params["g_ab" if direction == "a_to_b" else "g_ba"]}, x)


def source_classes(m: Any, direction: str) -> tuple[int, ...]:
    """The source domain of ``direction``."""
    return tuple(m.domain_a if direction == "a_to_b" else m.domain_b)


TASK = ImageTask(name="cyclegan", defaults=DEFAULTS, check=check, build=build, init_params=init_params,
                 inputs_of=inputs_of, generate=generate, d_objective=d_objective, g_objective=g_objective,
                 evaluate=evaluate, translate=translate, source_classes=source_classes,
                 sample_options=(DIRECTION,))
