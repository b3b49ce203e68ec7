"""PixelCNN as a :class:`gm_jax.core.Family`: exact discrete NLL training and sequential sampling.

The gated PixelCNN (van den Oord et al. 2016b) with a per-sub-pixel ``L``-way softmax (van den Oord et al.
2016a) or a discretized logistic mixture (Salimans et al. 2017). ``loss`` is the exact NLL in nats per
example, ``bits_per_dim = loss / (H·W·C·ln 2)``. Data must be discrete (``spec.levels >= 2``): 8-bit images
(``levels = 256``) or binarized ones (``levels = 2``); dequantized input is refused.
"""

from __future__ import annotations

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
from gm_jax.autoregressive.model import GatedPixelCNN
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
from gm_jax.metrics.likelihood import nats_to_bits_per_dim


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


def make_family(config: Any, spec: DataSpec) -> Family:
    """PixelCNN family: ``loss`` = exact NLL ``−Σ log p(k_ijc | k_<ijc)`` in nats per example
    (van den Oord et al. 2016a, eq. 1), ``bits_per_dim``; ``sample`` draws sub-pixels one at a time."""
    model_cfg = config.model
    net = build_pixelcnn(model_cfg, spec)
    if "data" in config:
        require(not config.data.get("dequantize", False),
                "PixelCNN has a discrete likelihood; set data.dequantize=False")
    tx = make_optimizer(config.optim)
    ema_decay = float(config.optim.get("ema_decay", 0.0))
    levels, likelihood = spec.levels, model_cfg.likelihood
    dims = int(np.prod(spec.shape))
    conditional = net.num_classes > 0

    def to_levels(x: jax.Array) -> jax.Array:
        require(tuple(x.shape[1:]) == tuple(spec.shape),
                f"batch['x'] has example shape {tuple(x.shape[1:])}, expected {tuple(spec.shape)}")
        if not isinstance(x, jax.core.Tracer):
            check_integer_levels(x, spec.value_range, levels)
        return values_to_levels(x, spec.value_range, levels)

    def log_prob(params: Any, k: jax.Array, label: jax.Array | None) -> jax.Array:
        outputs = net.apply(params, levels_to_unit(k, levels), label if conditional else None)
        return image_log_prob(outputs, k, likelihood, levels)

    def init(key: jax.Array, example_batch: Batch) -> TrainState:
        k = to_levels(jnp.asarray(example_batch["x"], jnp.float32))
        label = example_batch.get("label") if conditional else None
        params = net.init(key, levels_to_unit(k, levels), label)
        return TrainState.create(key, params, tx, use_ema=ema_decay > 0)

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        del key  # the exact likelihood needs no randomness
        k = to_levels(batch["x"])
        label = batch.get("label") if conditional else None

        def loss_fn(params: Any) -> jax.Array:
            return -jnp.mean(log_prob(params, k, label))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        state = apply_gradients(state, tx, grads, ema_decay)
        return state, {"loss": loss, "nll": loss, "bits_per_dim": nats_to_bits_per_dim(loss, dims)}

    def evaluate(params: Any, batch: Batch, key: jax.Array) -> Metrics:
        """``nll`` (nats per example) and ``bits_per_dim`` of the exact likelihood."""
        del key
        nll = -jnp.mean(log_prob(params, to_levels(batch["x"]), batch.get("label") if conditional else None))
        return {"nll": nll, "bits_per_dim": nats_to_bits_per_dim(nll, dims)}

    def sample(params: Any, key: jax.Array, num: int, temperature: float | jax.Array | None = None,
               label: jax.Array | None = None) -> tuple[jax.Array, dict[str, Any]]:
        """``num`` images in ``spec.value_range`` drawn sub-pixel by sub-pixel at ``temperature`` (an array;
        default ``config.model.temperature``); ``label`` defaults to ``i mod num_classes``. NFE = H·W·C."""
        t = jnp.asarray(model_cfg.temperature if temperature is None else temperature, jnp.float32)
        if conditional and label is None:
            label = jnp.arange(num) % net.num_classes
        k, info = _sample_levels(params, key, t, label if conditional else None, num)
        return levels_to_values(k, spec.value_range, levels), info

    @partial(jax.jit, static_argnums=(4,))
    def _sample_levels(params: Any, key: jax.Array, t: jax.Array, label: jax.Array | None,
                       num: int) -> tuple[jax.Array, dict[str, int]]:
        def output_fn(k: jax.Array) -> jax.Array:
            return net.apply(params, levels_to_unit(k, levels), label)

        if likelihood == "categorical":
            def draw(draw_key: jax.Array, p: jax.Array) -> jax.Array:
                return sample_categorical(draw_key, p, t)
        else:
            def draw(draw_key: jax.Array, p: jax.Array) -> jax.Array:
                return sample_discretized_logistic_mixture(draw_key, p, t, levels)
        return sequential_sample(output_fn, draw, key, (num, *spec.shape))

    return Family(name="pixelcnn", init=init, train_step=train_step, sample=sample, evaluate=evaluate)
