"""The interface every image-to-image GAN task implements, and the pieces shared by the paired tasks.

An :class:`ImageTask` is a frozen bundle of pure functions of a :class:`TaskNets` (the task's config, data
spec and networks): how to build the networks, initialise their parameters, turn a data batch into the
task's inputs, run the generator(s), the discriminator and generator objectives, evaluation and translation.
:mod:`gm_jax.gan.image_to_image` only assembles them into a :class:`gm_jax.core.Family`.

Paired tasks (Pix2Pix, SRGAN) build a condition from each target image and share :func:`paired_task`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.family import Batch, DataSpec, Metrics
from gm_jax.core.options import Option
from gm_jax.gan.losses import get_loss
from gm_jax.metrics.image_quality import psnr

Arrays = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class TaskNets:
    """What a task's functions share: ``config.model``, the data spec, the generator and discriminator
    modules, the adversarial loss name and (SRGAN) the content feature map ``phi``."""

    model: Any
    spec: DataSpec
    gen: nn.Module
    disc: nn.Module
    loss: str
    features: Callable[[jax.Array], jax.Array] | None = None


@dataclasses.dataclass(frozen=True)
class ImageTask:
    """One image-to-image task as pure functions (``nets`` first everywhere).

    defaults: the task's fields of ``config.model``; check(model, spec): one-line ConfigError on a bad
    config; build(model, spec) -> TaskNets; init_params(nets, key, x) -> ``{"generator", "discriminator"}``;
    inputs_of(nets, batch, key) -> input arrays; generate(nets, g_params, inputs) -> generator outputs;
    d_objective(nets, d_params, inputs, fakes) and g_objective(nets, fakes, d_params, inputs) -> (loss,
    metrics); evaluate(nets, params, batch, key) -> metrics; translate(nets, g_params, x, key, direction)
    -> images; source_classes(model, direction): the classes of the default source images (None: all);
    sample_options: the run-time options of ``sample`` beyond ``source``; measurement_condition(nets, y, op)
    -> the generator's input for a measurement ``y`` of the linear operator ``op`` (the task's own
    measurement; a one-line ConfigError for any other), or None when the task restores nothing
    (:func:`gm_jax.gan.image_to_image.restore`)."""

    name: str
    defaults: Mapping[str, Any]
    check: Callable[[Any, DataSpec], None]
    build: Callable[[Any, DataSpec], TaskNets]
    init_params: Callable[[TaskNets, jax.Array, jax.Array], dict[str, Any]]
    inputs_of: Callable[[TaskNets, Batch, jax.Array], Arrays]
    generate: Callable[[TaskNets, Any, Arrays], Arrays]
    d_objective: Callable[[TaskNets, Any, Arrays, Arrays], tuple[jax.Array, Metrics]]
    g_objective: Callable[[TaskNets, Arrays, Any, Arrays], tuple[jax.Array, Metrics]]
    evaluate: Callable[[TaskNets, Any, Batch, jax.Array], Metrics]
    translate: Callable[..., jax.Array]
    source_classes: Callable[[Any, str], tuple[int, ...] | None]
    sample_options: tuple[Option, ...] = ()
    measurement_condition: Callable[[TaskNets, jax.Array, Any], jax.Array] | None = None


# A paired task's condition: (nets, target images, key) -> generator input; its critic:
# (nets, d_params, images, condition) -> logits.
ConditionFn = Callable[[TaskNets, jax.Array, jax.Array], jax.Array]
CriticFn = Callable[[TaskNets, Any, jax.Array, jax.Array], jax.Array]


def paired_inputs(condition: ConditionFn, nets: TaskNets, batch: Batch, key: jax.Array) -> Arrays:
    """``{"condition": c(x), "target": x}`` for target images ``x`` (any random parts of c drawn with key)."""
    x = batch["x"]
    return {"condition": condition(nets, x, key), "target": x}


def paired_generate(nets: TaskNets, g_params: Any, inputs: Arrays) -> Arrays:
    """``{"fake": G(condition)}``."""
    return {"fake": nets.gen.apply({"params": g_params}, inputs["condition"])}


def paired_d_objective(critic: CriticFn, nets: TaskNets, d_params: Any, inputs: Arrays, fakes: Arrays
                       ) -> tuple[jax.Array, Metrics]:
    """The named loss's ``d_loss`` of real targets against generated images (Goodfellow et al. 2014)."""
    cond = inputs["condition"]
    out = get_loss(nets.loss)(critic(nets, d_params, inputs["target"], cond),
                              critic(nets, d_params, fakes["fake"], cond))
    return out.d_loss, {"d_loss": out.d_loss, "d_real": out.d_real, "d_fake": out.d_fake}


def paired_evaluate(condition: ConditionFn, nets: TaskNets, params: Any, batch: Batch, key: jax.Array
                    ) -> Metrics:
    """Mean L1 and PSNR (dB, range 2) of ``G(condition)`` against the target images."""
    x = batch["x"]
    fake = nets.gen.apply({"params": params["generator"]}, condition(nets, x, key))
    return {"l1": jnp.mean(jnp.abs(fake - x)), "psnr": jnp.mean(psnr(fake, x))}


def paired_translate(condition: ConditionFn, nets: TaskNets, g_params: Any, x: jax.Array, key: jax.Array,
                     direction: str = "a_to_b") -> jax.Array:
    """``G(condition(x))`` for target-like images ``x`` (a paired task has one direction)."""
    del direction
    return nets.gen.apply({"params": g_params}, condition(nets, x, key))


def paired_init(condition: ConditionFn, init_disc: Callable[[TaskNets, jax.Array, jax.Array, jax.Array], Any],
                nets: TaskNets, key: jax.Array, x: jax.Array) -> dict[str, Any]:
    """Parameters of G (on ``condition(x)``) and D (``init_disc(nets, key, condition, x)``)."""
    k_g, k_d, k_in = jax.random.split(key, 3)
    cond = condition(nets, x, k_in)
    return {"generator": nets.gen.init(k_g, cond)["params"],
            "discriminator": init_disc(nets, k_d, cond, x)["params"]}


def all_classes(model: Any, direction: str) -> None:
    """Paired tasks translate images of every class."""
    del model, direction


def paired_task(name: str, defaults: Mapping[str, Any], check: Callable[[Any, DataSpec], None],
                build: Callable[[Any, DataSpec], TaskNets], condition: ConditionFn, critic: CriticFn,
                init_disc: Callable[..., Any],
                g_objective: Callable[[TaskNets, Arrays, Any, Arrays], tuple[jax.Array, Metrics]],
                evaluate: Callable[[TaskNets, Any, Batch, jax.Array], Metrics] | None = None,
                measurement_condition: Callable[[TaskNets, jax.Array, Any], jax.Array] | None = None) -> ImageTask:
    """An :class:`ImageTask` whose generator maps ``condition(x)`` back to ``x``."""
    return ImageTask(
        name=name, defaults=defaults, check=check, build=build,
        init_params=functools.partial(paired_init, condition, init_disc),
        inputs_of=functools.partial(paired_inputs, condition), generate=paired_generate,
        d_objective=functools.partial(paired_d_objective, critic), g_objective=g_objective,
        evaluate=evaluate or functools.partial(paired_evaluate, condition),
        translate=functools.partial(paired_translate, condition), source_classes=all_classes,
        measurement_condition=measurement_condition)
