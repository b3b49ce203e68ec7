"""PixelCNN as a :class:`gm_jax.core.Family`: exact discrete NLL training and sequential sampling.

The gated PixelCNN (van den Oord et al. 2016b) with a per-sub-pixel ``L``-way softmax (van den Oord et al.
2016a) or a discretized logistic mixture (Salimans et al. 2017). ``loss`` is the exact NLL in nats per
example, ``bits_per_dim = loss / (H·W·C·ln 2)``. Data must be discrete (``spec.levels >= 2``): 8-bit images
(``levels = 256``) or binarized ones (``levels = 2``); dequantized input is refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gm_jax.autoregressive.likelihood import (
    check_integer_levels,
    image_log_prob,
    levels_to_unit,
    levels_to_values,
    params_per_color,
    values_to_levels,
)
from gm_jax.autoregressive.sample import (
    sample_categorical,
    sample_discretized_logistic_mixture,
    sequential_sample,
)
from gm_jax.core import (
    Batch,
    DataSpec,
    Family,
    Metrics,
    TrainState,
    apply_gradients,
    check_choice,
    make_optimizer,
    require,
)
from gm_jax.core.family import FamilyInputs
from gm_jax.core.options import Option
from gm_jax.metrics.likelihood import nats_to_bits_per_dim
from gm_jax.nn.pixelcnn import GatedPixelCNN

TEMPERATURE = Option("temperature", "float", "PixelCNN: softmax / logistic temperature of every sub-pixel draw",
                     1.0, low=0.0, low_open=True)
LABEL = Option("label", "int", "PixelCNN: class of every sample (class-conditional models; none: i mod classes)",
               low=0)
SAMPLE_OPTIONS: tuple[Option, ...] = (TEMPERATURE, LABEL)


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model`` for PixelCNN.

    hidden: features per stack; num_layers: gated layers; kernel_size: odd k (receptive field grows by
    k // 2 per layer); likelihood: 'categorical' (L-way softmax) or 'logistic_mixture' (PixelCNN++
    discretized logistics, num_mixtures components); class_conditional: condition on the label;
    temperature: default sampling temperature.
    """
    return ml_collections.ConfigDict(dict(
        family="pixelcnn", hidden=32, num_layers=6, kernel_size=3, likelihood="categorical",
        num_mixtures=5, class_conditional=False, temperature=1.0))


def build_pixelcnn(model_cfg: Any, spec: DataSpec) -> GatedPixelCNN:
    """The gated PixelCNN the config asks for, on images of ``spec.shape`` with ``spec.levels`` levels."""
    require(spec.is_image, f"PixelCNN models images [H, W, C], got example shape {spec.shape}")
    require(spec.levels >= 2, f"PixelCNN needs discrete data (spec.levels >= 2), got levels={spec.levels}; "
            "use 8-bit or binarized data")
    check_choice("model.likelihood", model_cfg.likelihood, ("categorical", "logistic_mixture"))
    conditional = bool(model_cfg.get("class_conditional", False))
    require(not conditional or spec.num_classes > 0,
            f"model.class_conditional needs a labelled dataset, {spec.name or 'this data'} has no classes")
    return GatedPixelCNN(
        num_colors=spec.shape[-1],
        params_per_color=params_per_color(model_cfg.likelihood, spec.levels, model_cfg.num_mixtures),
        hidden=model_cfg.hidden, num_layers=model_cfg.num_layers, kernel_size=model_cfg.kernel_size,
        num_classes=spec.num_classes if conditional else 0)


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces of one PixelCNN family: the network, its optimizer and the data it models."""

    cfg: Any
    spec: DataSpec
    net: GatedPixelCNN
    tx: Any
    ema_decay: float

    @property
    def conditional(self) -> bool:
        return self.net.num_classes > 0


def to_levels(s: Setup, x: jax.Array) -> jax.Array:
    """Images in ``spec.value_range`` as integer levels ``0 … L − 1`` (checked exact when concrete)."""
    require(tuple(x.shape[1:]) == tuple(s.spec.shape),
            f"batch['x'] has example shape {tuple(x.shape[1:])}, expected {tuple(s.spec.shape)}")
    if not isinstance(x, jax.core.Tracer):
        check_integer_levels(x, s.spec.value_range, s.spec.levels)
    return values_to_levels(x, s.spec.value_range, s.spec.levels)


def batch_labels(s: Setup, batch: Batch) -> jax.Array | None:
    return batch.get("label") if s.conditional else None


def log_prob(s: Setup, params: Any, k: jax.Array, label: jax.Array | None) -> jax.Array:
    """``log p(k) = Σ_ijc log p(k_ijc | k_<ijc)`` per image (van den Oord et al. 2016a, eq. 1)."""
    outputs = s.net.apply(params, levels_to_unit(k, s.spec.levels), label)
    return image_log_prob(outputs, k, s.cfg.likelihood, s.spec.levels)


def init_state(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    k = to_levels(s, jnp.asarray(example_batch["x"], jnp.float32))
    params = s.net.init(key, levels_to_unit(k, s.spec.levels), batch_labels(s, example_batch))
    return TrainState.create(key, params, s.tx, use_ema=s.ema_decay > 0)


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One gradient step on the exact NLL in nats per example."""
    del key  # the exact likelihood needs no randomness
    k, label = to_levels(s, batch["x"]), batch_labels(s, batch)
    loss, grads = jax.value_and_grad(lambda p: -jnp.mean(log_prob(s, p, k, label)))(state.params)
    state = apply_gradients(state, s.tx, grads, s.ema_decay)
    return state, {"loss": loss, "nll": loss, "bits_per_dim": nats_to_bits_per_dim(loss, math.prod(s.spec.shape))}


def evaluate(s: Setup, params: Any, batch: Batch, key: jax.Array) -> Metrics:
    """``nll`` (nats per example) and ``bits_per_dim`` of the exact likelihood."""
    del key
    nll = -jnp.mean(log_prob(s, params, to_levels(s, batch["x"]), batch_labels(s, batch)))
    return {"nll": nll, "bits_per_dim": nats_to_bits_per_dim(nll, math.prod(s.spec.shape))}


def sample_levels(s: Setup, params: Any, key: jax.Array, t: jax.Array, label: jax.Array | None,
                  num: int) -> tuple[jax.Array, dict[str, int]]:
    """Levels ``[num, H, W, C]`` drawn sub-pixel by sub-pixel at temperature ``t`` (NFE = H·W·C)."""
    levels = s.spec.levels

    def output_fn(k: jax.Array) -> jax.Array:
        return s.net.apply(params, levels_to_unit(k, levels), label)

    if s.cfg.likelihood == "categorical":
        def draw(draw_key: jax.Array, p: jax.Array) -> jax.Array:
            return sample_categorical(draw_key, p, t)
    else:
        def draw(draw_key: jax.Array, p: jax.Array) -> jax.Array:
            return sample_discretized_logistic_mixture(draw_key, p, t, levels)
    return sequential_sample(output_fn, draw, key, (num, *s.spec.shape))


def sample_labels(s: Setup, label_option: Option | None, num: int, label: Any) -> jax.Array | None:
    """The class of every sample: ``i mod num_classes`` when not given, one class for all (an int), or one
    per sample (an array of ``num`` classes, from Python); ``None`` for an unconditional model."""
    if label_option is None:
        require(label is None, "this PixelCNN is not class-conditional; drop label or train with "
                "model.class_conditional=True")
        return None
    if label is None:
        return jnp.arange(num) % s.net.num_classes
    if np.ndim(label) == 0:
        return jnp.full((num,), label_option.check(label), jnp.int32)
    labels = np.asarray(label)
    require(labels.shape == (num,), f"label must be one class or {num} classes, got shape {labels.shape}")
    for value in labels.tolist():
        label_option.check(value)
    return jnp.asarray(labels, jnp.int32)


def sample(s: Setup, options: Mapping[str, Option], levels_jit: Any, params: Any, key: jax.Array, num: int,
           temperature: float | None = None, label: Any = None) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` images in ``spec.value_range`` drawn sub-pixel by sub-pixel at ``temperature`` (default
    ``config.model.temperature``); ``label`` (class-conditional models) defaults to ``i mod num_classes``.
    NFE = H·W·C. ``levels_jit``: :func:`sample_levels` jitted with ``num`` static."""
    t = options["temperature"]
    t = t.check(t.default if temperature is None else temperature)
    labels = sample_labels(s, options.get("label"), num, label)
    k, info = levels_jit(params, key, jnp.float32(t), labels, num)
    return levels_to_values(k, s.spec.value_range, s.spec.levels), info


def make_family(config: Any, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()) -> Family:
    """PixelCNN family: ``loss`` = exact NLL ``−Σ log p(k_ijc | k_<ijc)`` in nats per example
    (van den Oord et al. 2016a, eq. 1), ``bits_per_dim``; ``sample`` draws sub-pixels one at a time
    (options ``temperature`` and, class-conditional, ``label``)."""
    del inputs  # no evaluation images or upstream runs are needed
    model_cfg = config.model
    net = build_pixelcnn(model_cfg, spec)
    if "data" in config:
        require(not config.data.get("dequantize", False),
                "PixelCNN has a discrete likelihood; set data.dequantize=False")
    s = Setup(model_cfg, spec, net, make_optimizer(config.optim), float(config.optim.get("ema_decay", 0.0)))
    options = [TEMPERATURE.narrowed(default=TEMPERATURE.check(model_cfg.temperature))]
    if s.conditional:
        options.append(LABEL.narrowed(high=net.num_classes - 1))
    levels_jit = jax.jit(partial(sample_levels, s), static_argnums=(4,))
    return Family(name="pixelcnn", init=partial(init_state, s), train_step=partial(train_step, s),
                  sample=partial(sample, s, {o.name: o for o in options}, levels_jit),
                  evaluate=partial(evaluate, s), sample_options=tuple(options),
                  conditioning=("label",) if s.conditional else ())
