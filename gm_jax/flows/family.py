"""Normalizing flows as a :class:`gm_jax.core.Family`: maximum-likelihood training and exact NLL.

Vectors (2-D toy data) use RealNVP with MLP couplings; images use a multi-scale RealNVP or Glow.
Discrete data (``spec.levels > 0``) is dequantized with uniform noise in training and evaluation, and the
reported NLL is the bound on the discrete NLL (``gm_jax.metrics.likelihood.discrete_nll_from_continuous``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gm_jax.core import (
    Batch,
    ConfigError,
    DataSpec,
    Family,
    Metrics,
    TrainState,
    apply_gradients,
    check_choice,
    make_optimizer,
    require,
    uniform_dequantize,
)
from gm_jax.flows.model import Flow, image_flow, num_dims, realnvp_vector
from gm_jax.metrics.likelihood import discrete_nll_from_continuous, nats_to_bits_per_dim


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model`` for flows.

    family: 'flow'; kind: 'realnvp' or 'glow' ('glow' applies to images only; vectors always use RealNVP);
    num_layers/hidden/depth: vector RealNVP couplings and their MLPs; num_scales/steps_per_scale/
    image_hidden: image flows; actnorm: ActNorm before every vector coupling; temperature: default
    sampling temperature.
    """
    return ml_collections.ConfigDict(dict(
        family="flow", kind="realnvp", num_layers=8, hidden=64, depth=2, actnorm=True,
        num_scales=2, steps_per_scale=4, image_hidden=32, temperature=1.0))


def build_flow(model_cfg: Any, spec: DataSpec) -> Flow:
    """The flow the config asks for, on examples of ``spec.shape``."""
    check_choice("model.kind", model_cfg.kind, ("realnvp", "glow"))
    if spec.is_image:
        return image_flow(tuple(spec.shape), model_cfg.kind, model_cfg.num_scales,
                          model_cfg.steps_per_scale, model_cfg.image_hidden)
    require(len(spec.shape) == 1, f"flows take vectors [D] or images [H, W, C], got shape {spec.shape}")
    return realnvp_vector(spec.shape[0], model_cfg.num_layers, model_cfg.hidden, model_cfg.depth,
                          model_cfg.actnorm)


def make_family(config: Any, spec: DataSpec) -> Family:
    """Flow family: ``loss`` is the mean NLL in nats per dimension of the (dequantized) data (Dinh et al.
    2017, eq. 3); metrics also carry ``nll`` (nats per example, discrete bound for 8-bit data) and, for
    images, ``bits_per_dim``."""
    model_cfg = config.model
    flow = build_flow(model_cfg, spec)
    tx = make_optimizer(config.optim)
    ema_decay = float(config.optim.get("ema_decay", 0.0))
    dims = num_dims(spec.shape)
    discrete = spec.levels > 0
    if spec.binary:
        raise ConfigError("flows need continuous or multi-level data, got binary data; "
                          "use an autoregressive or VAE family for binary images")

    def prepare(x: jax.Array, key: jax.Array) -> jax.Array:
        require(tuple(x.shape[1:]) == tuple(spec.shape),
                f"batch['x'] has example shape {tuple(x.shape[1:])}, expected {tuple(spec.shape)}")
        if discrete:
            return uniform_dequantize(key, x, spec.value_range, spec.levels)
        return x

    def nll_metrics(params: Any, x: jax.Array) -> dict[str, jax.Array]:
        nll = -flow.apply(params, x, method=Flow.log_prob)
        if discrete:
            nll = discrete_nll_from_continuous(nll, dims, spec.value_range, spec.levels)
        metrics = {"nll": jnp.mean(nll)}
        if spec.is_image or discrete:
            metrics["bits_per_dim"] = jnp.mean(nats_to_bits_per_dim(nll, dims))
        return metrics

    def init(key: jax.Array, example_batch: Batch) -> TrainState:
        init_key, deq_key = jax.random.split(key)
        x = prepare(jnp.asarray(example_batch["x"], jnp.float32), deq_key)
        params = jax.jit(flow.init)(init_key, x)
        return TrainState.create(key, params, tx, use_ema=ema_decay > 0)

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        x = prepare(batch["x"], key)

        def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
            log_prob = flow.apply(params, x, method=Flow.log_prob)
            return -jnp.mean(log_prob) / dims, log_prob

        (loss, log_prob), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = apply_gradients(state, tx, grads, ema_decay)
        nll = -log_prob
        if discrete:
            nll = discrete_nll_from_continuous(nll, dims, spec.value_range, spec.levels)
        metrics = {"loss": loss, "nll": jnp.mean(nll), "grad_norm": _global_norm(grads)}
        if spec.is_image or discrete:
            metrics["bits_per_dim"] = jnp.mean(nats_to_bits_per_dim(nll, dims))
        return state, metrics

    def sample(params: Any, key: jax.Array, num: int,
               temperature: jax.Array | float | None = None) -> tuple[jax.Array, dict[str, Any]]:
        """``num`` samples at ``temperature`` (default ``config.model.temperature``); one inverse pass."""
        t = model_cfg.temperature if temperature is None else temperature
        return _sample(params, key, num, jnp.asarray(t, jnp.float32)), {"nfe": 1}

    @partial(jax.jit, static_argnames="num")
    def _sample(params: Any, key: jax.Array, num: int, temperature: jax.Array) -> jax.Array:
        x = flow.apply(params, key, num, temperature, method=Flow.sample)
        if spec.is_image or discrete:
            x = jnp.clip(x, *spec.value_range)
        return x

    def evaluate(params: Any, batch: Batch, key: jax.Array) -> Metrics:
        """``nll`` in nats per example (discrete bound for quantized data) and ``bits_per_dim``."""
        return nll_metrics(params, prepare(batch["x"], key))

    return Family(name="flows", init=init, train_step=train_step, sample=sample, evaluate=evaluate)


def _global_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(tree)))
