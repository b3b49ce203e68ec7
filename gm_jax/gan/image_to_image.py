"""Image-to-image GANs behind the common Family protocol: Pix2Pix, CycleGAN and SRGAN on tasks built offline
from a labelled image dataset (see the task constructors in :mod:`gm_jax.gan.tasks`).

``config.model.task`` selects the task (``config.model.family`` stays ``"gan"``); each task is one
:class:`~gm_jax.gan.translation.common.ImageTask` (:mod:`gm_jax.gan.translation.pix2pix`,
:mod:`~gm_jax.gan.translation.cyclegan`, :mod:`~gm_jax.gan.translation.srgan`) and this module only
assembles it into a Family.

Each step computes the generator outputs once (``jax.vjp``), updates the discriminator(s) on them with the
generator fixed, then back-propagates the generator loss under the updated discriminator through the same
outputs. ``params``/``opt_state`` are ``{"generator": ..., "discriminator": ...}`` (CycleGAN nests two
networks in each). ``sample(params, key, num, source=None)`` translates ``source`` images (default: the first
``num`` images of the eval split, of domain A for CycleGAN, which also takes ``direction``); ``evaluate``
reports L1 / PSNR (SRGAN also the bicubic PSNR; CycleGAN the cycle L1) on eval batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gm_jax.core.errors import check_choice, require
from gm_jax.core.family import Batch, DataSpec, Family, FamilyInputs, Metrics
from gm_jax.core.optim import make_optimizer
from gm_jax.core.options import Option, merge_options
from gm_jax.core.state import TrainState
from gm_jax.gan.losses import LOSSES
from gm_jax.gan.translation import cyclegan, pix2pix, srgan
from gm_jax.gan.translation.common import ImageTask, TaskNets

TASKS: dict[str, ImageTask] = {t.name: t for t in (pix2pix.TASK, cyclegan.TASK, srgan.TASK)}
NETS = ("generator", "discriminator")
# Every sampling option of every task (``source`` is an array, a Python-only keyword).
SAMPLE_OPTIONS: tuple[Option, ...] = merge_options(*(t.sample_options for t in TASKS.values()))
# Restoration with a trained generator: the method is the task's name; it takes no options (one deterministic
# output per measurement, whatever σ_y).
RESTORE_METHODS: dict[str, list[str]] = {name: [] for name, t in TASKS.items() if t.measurement_condition}
METHOD = Option("method", "str", "the trained generator that solves the inverse problem (pix2pix: an inpainting "
                "Pix2Pix model; srgan: an SRGAN of the same scale)", "pix2pix", choices=tuple(RESTORE_METHODS))
RESTORE_OPTIONS: tuple[Option, ...] = (METHOD,)


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
    return ml_collections.ConfigDict({**common, **TASKS[task].defaults})


def check_config(m: Any, spec: DataSpec) -> ImageTask:
    """The task named by ``config.model.task``, after checking the shared fields and the task's own."""
    check_choice("model.task", m.task, TASKS)
    check_choice("model.loss", m.loss, LOSSES)
    require(spec.is_image, f"model.task={m.task!r} needs image data [H, W, C], got shape {spec.shape}")
    require(int(m.features) >= 1, f"model.features must be >= 1, got {m.features}")
    check_choice("model.normalization", m.normalization, ("instance", "layer", "none"))
    task = TASKS[str(m.task)]
    task.check(m, spec)
    return task


def optimizer(optim_cfg: Any, m: Any, lr_field: str) -> optax.GradientTransformation:
    """``config.optim``'s optimizer, with ``model.<lr_field>`` as learning rate when > 0 (TTUR)."""
    cfg = ml_collections.ConfigDict(dict(optim_cfg.items()))
    if float(m.get(lr_field, 0.0)) > 0:
        cfg.learning_rate = float(m[lr_field])
    return make_optimizer(cfg)


def init(task: ImageTask, nets: TaskNets, txs: dict[str, optax.GradientTransformation], key: jax.Array,
         example_batch: Batch) -> TrainState:
    x = jnp.asarray(example_batch["x"])
    spec = nets.spec
    require(tuple(x.shape[1:]) == tuple(spec.shape),
            f"batch x has example shape {tuple(x.shape[1:])}, the spec says {tuple(spec.shape)}")
    params = task.init_params(nets, jax.random.fold_in(key, 0), x)
    opt_state = {name: txs[name].init(params[name]) for name in NETS}
    return TrainState(step=jnp.zeros((), jnp.int32), rng=key, params=params, opt_state=opt_state)


def train_step(task: ImageTask, nets: TaskNets, txs: dict[str, optax.GradientTransformation], state: TrainState,
               batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One discriminator update on the generator's outputs, then one generator update through them."""
    inputs = task.inputs_of(nets, batch, key)
    g_params, d_params = state.params["generator"], state.params["discriminator"]
    fakes, g_vjp = jax.vjp(lambda g: task.generate(nets, g, inputs), g_params)
    d_grads, d_metrics = jax.grad(functools.partial(task.d_objective, nets), has_aux=True)(
        d_params, inputs, jax.lax.stop_gradient(fakes))
    d_updates, d_opt = txs["discriminator"].update(d_grads, state.opt_state["discriminator"], d_params)
    d_params = optax.apply_updates(d_params, d_updates)
    fake_grads, g_metrics = jax.grad(functools.partial(task.g_objective, nets), has_aux=True)(
        fakes, d_params, inputs)
    (g_grads,) = g_vjp(fake_grads)
    g_updates, g_opt = txs["generator"].update(g_grads, state.opt_state["generator"], g_params)
    params = {"generator": optax.apply_updates(g_params, g_updates), "discriminator": d_params}
    new_state = state.replace(step=state.step + 1, params=params,
                              opt_state={"generator": g_opt, "discriminator": d_opt})
    return new_state, {**d_metrics, **g_metrics}


def eval_sources(eval_batches: Callable[[int], Iterator[dict]] | None, classes: tuple[int, ...] | None,
                 num: int) -> np.ndarray:
    """The first ``num`` eval images (of ``classes`` when given)."""
    require(eval_batches is not None, "this family was built without eval data; pass source images "
            "[num, H, W, C] to sample")
    chunks, have = [], 0
    for b in eval_batches(500):
        x = b["x"] if classes is None else b["x"][np.isin(b["label"], classes)]
        chunks.append(x)
        have += len(x)
        if have >= num:
            break
    x = np.concatenate(chunks)[:num]
    require(len(x) == num, f"the eval split has only {len(x)} source images; lower num")
    return x


def make_sample(task: ImageTask, nets: TaskNets, eval_batches: Callable[[int], Iterator[dict]] | None
                ) -> Callable[..., tuple[jax.Array, dict[str, Any]]]:
    """``sample(params, key, num, source=None, direction='a_to_b')`` of the task (compiled translations,
    default sources cached)."""
    translate = {d: jax.jit(functools.partial(task.translate, nets, direction=d)) for d in cyclegan.DIRECTIONS}
    cache: dict[tuple[int, str], np.ndarray] = {}

    def sample(params: Any, key: jax.Array, num: int, source: Any = None, direction: str = "a_to_b"
               ) -> tuple[jax.Array, dict[str, Any]]:
        """Translate ``num`` source images (``source`` ``[num, H, W, C]``, default the first ``num`` eval
        images; CycleGAN: of the source domain of ``direction`` 'a_to_b' or 'b_to_a'). For pix2pix /
        srgan the images are targets from which the condition is built (inpainting holes drawn with
        ``key``); returns the generated images and ``info["nfe"] = 1``."""
        require(int(num) >= 1, f"num must be >= 1, got {num}")
        check_choice("direction", direction, cyclegan.DIRECTIONS)
        if source is None:
            if (int(num), direction) not in cache:
                cache[(int(num), direction)] = eval_sources(
                    eval_batches, task.source_classes(nets.model, direction), int(num))
            x = cache[(int(num), direction)]
        else:
            x = np.asarray(source, np.float32)
        require(x.shape == (int(num), *nets.spec.shape),
                f"source must have shape {(int(num), *nets.spec.shape)}, got {tuple(x.shape)}")
        return translate[direction](params["generator"], jnp.asarray(x), key), {"nfe": 1}

    return sample


def restore(task: ImageTask, nets: TaskNets, compiled: dict, params: Any, key: jax.Array, y: Any, op: Any,
            method: str | None = None, num: int = 1, first_index: int = 0, **options: Any
            ) -> tuple[jax.Array, dict[str, Any]]:
    """The generator's answer to measurements y [B, *op.y_shape] of the linear operator ``op``:
    ``G(task.measurement_condition(y, op))`` as [num, B, *image shape] (the same image ``num`` times: a
    generator is deterministic), ``info["nfe"] = 1``. ``method`` must be the task's name; no other options
    (``key`` and ``first_index`` are unused). ``compiled``: the jit cache."""
    del key, first_index
    method = task.name if method is None else str(method)
    require(method == task.name, f"method {method!r} is not what this {task.name} model does; use --method "
            f"{task.name} (zero-shot methods need a diffusion model)")
    given = {k: v for k, v in options.items() if v is not None}
    require(not given, f"the {task.name} generator takes no restoration options, got "
            f"{', '.join('--' + k for k in sorted(given))}; drop them")
    require(int(num) >= 1, f"num must be >= 1, got {num}")
    require(tuple(op.x_shape) == tuple(nets.spec.shape), f"operator {op.name!r} acts on images of shape "
            f"{tuple(op.x_shape)}, this model's are {tuple(nets.spec.shape)}")
    y = jnp.asarray(y, jnp.float32)
    require(y.ndim == len(op.y_shape) + 1 and tuple(y.shape[1:]) == tuple(op.y_shape), f"measurements have "
            f"shape {tuple(y.shape)}, expected [B, {', '.join(map(str, op.y_shape))}]")
    cond = task.measurement_condition(nets, y, op)
    if "generator" not in compiled:
        compiled["generator"] = jax.jit(lambda g, c: nets.gen.apply({"params": g}, c))
    x = compiled["generator"](params["generator"], cond)
    return jnp.broadcast_to(x[None], (int(num),) + x.shape), {"nfe": 1}


def make_family(config: Any, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()) -> Family:
    """Build the Pix2Pix, CycleGAN or SRGAN family from ``config.model`` (see :func:`model_defaults`) and
    ``config.optim`` (one optimizer per group, as in :mod:`gm_jax.gan.family`; ``model.generator_lr`` /
    ``discriminator_lr`` > 0 override the learning rate, TTUR). ``inputs.eval_batches`` (``batch_size ->
    iterator of eval batches``, given by the training loop) supplies the default source images of
    ``sample``; without it ``sample`` needs ``source``."""
    m = config.model
    task = check_config(m, spec)
    nets = task.build(m, spec)
    txs = {"generator": optimizer(config.optim, m, "generator_lr"),
           "discriminator": optimizer(config.optim, m, "discriminator_lr")}
    restoring = {}
    if task.measurement_condition is not None:
        restoring = dict(restore=functools.partial(restore, task, nets, {}),
                         restore_options=(METHOD.narrowed(default=task.name, choices=(task.name,)),))
    return Family(name=f"gan_{task.name}", init=functools.partial(init, task, nets, txs),
                  train_step=functools.partial(train_step, task, nets, txs),
                  sample=make_sample(task, nets, inputs.eval_batches),
                  evaluate=functools.partial(task.evaluate, nets), sample_options=task.sample_options,
                  conditioning=("image",), **restoring)
