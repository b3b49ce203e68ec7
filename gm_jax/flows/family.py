"""Normalizing flows as a :class:`gm_jax.core.Family`: maximum-likelihood training and exact NLL.

Vectors (2-D toy data) use RealNVP with MLP couplings; images use a multi-scale RealNVP or Glow.
Discrete data (``spec.levels > 0``) is dequantized with uniform noise in training and evaluation, and the
reported NLL is the bound on the discrete NLL (``gm_jax.metrics.likelihood.discrete_nll_from_continuous``).
"""

from __future__ import annotations

import dataclasses
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
from gm_jax.core.family import FamilyInputs
from gm_jax.core.options import Option
from gm_jax.flows.model import Flow, image_flow, num_dims, realnvp_vector
from gm_jax.metrics.likelihood import discrete_nll_from_continuous, nats_to_bits_per_dim

TEMPERATURE = Option("temperature", "float", "flow: scale τ of the base draw z ~ N(0, τ² I)", 1.0, low=0.0,
                     low_open=True)
SAMPLE_OPTIONS: tuple[Option, ...] = (TEMPERATURE,)


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


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces of one flow family: the flow, its optimizer, the data it models."""

    flow: Flow
    spec: DataSpec
    tx: Any
    ema_decay: float

    @property
    def discrete(self) -> bool:
        return self.spec.levels > 0


def prepare(s: Setup, x: jax.Array, key: jax.Array) -> jax.Array:
    """``x`` checked against ``spec.shape`` and, for discrete data, uniformly dequantized (Theis et al. 2016)."""
    require(tuple(x.shape[1:]) == tuple(s.spec.shape),
            f"batch['x'] has example shape {tuple(x.shape[1:])}, expected {tuple(s.spec.shape)}")
    if s.discrete:
        return uniform_dequantize(key, x, s.spec.value_range, s.spec.levels)
    return x


def nll_metrics(s: Setup, log_prob: jax.Array) -> dict[str, jax.Array]:
    """``nll`` (nats per example; for quantized data the bound on the discrete NLL) and ``bits_per_dim``
    (images or discrete data) from the continuous log-densities ``[B]``."""
    dims = num_dims(s.spec.shape)
    nll = -log_prob
    if s.discrete:
        nll = discrete_nll_from_continuous(nll, dims, s.spec.value_range, s.spec.levels)
    metrics = {"nll": jnp.mean(nll)}
    if s.spec.is_image or s.discrete:
        metrics["bits_per_dim"] = jnp.mean(nats_to_bits_per_dim(nll, dims))
    return metrics


def init_state(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    """Flow parameters initialized on the (dequantized) example batch (ActNorm's data-dependent init)."""
    init_key, deq_key = jax.random.split(key)
    x = prepare(s, jnp.asarray(example_batch["x"], jnp.float32), deq_key)
    params = jax.jit(s.flow.init)(init_key, x)
    return TrainState.create(key, params, s.tx, use_ema=s.ema_decay > 0)


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One gradient step on the mean NLL per dimension ``−mean log p(x) / D`` (Dinh et al. 2017, eq. 3)."""
    x = prepare(s, batch["x"], key)
    dims = num_dims(s.spec.shape)

    def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
        log_prob = s.flow.apply(params, x, method=Flow.log_prob)
        return -jnp.mean(log_prob) / dims, log_prob

    (loss, log_prob), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = apply_gradients(state, s.tx, grads, s.ema_decay)
    return state, {"loss": loss, **nll_metrics(s, log_prob), "grad_norm": _global_norm(grads)}


def evaluate(s: Setup, params: Any, batch: Batch, key: jax.Array) -> Metrics:
    """``nll`` in nats per example (discrete bound for quantized data) and ``bits_per_dim``."""
    return nll_metrics(s, s.flow.apply(params, prepare(s, batch["x"], key), method=Flow.log_prob))


def draw(s: Setup, params: Any, key: jax.Array, num: int, temperature: jax.Array) -> jax.Array:
    """``x = f^{-1}(τ z)``, ``z ~ N(0, I)``: one inverse pass, clipped to the range for images/discrete data."""
    x = s.flow.apply(params, key, num, temperature, method=Flow.sample)
    if s.spec.is_image or s.discrete:
        x = jnp.clip(x, *s.spec.value_range)
    return x


def sample(temperature_option: Option, draw_jit: Any, params: Any, key: jax.Array, num: int,
           temperature: float | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` samples at ``temperature`` (default ``config.model.temperature``); one inverse pass.
    ``draw_jit``: :func:`draw` jitted with ``num`` static."""
    t = temperature_option.check(temperature_option.default if temperature is None else temperature)
    return draw_jit(params, key, num, jnp.asarray(t, jnp.float32)), {"nfe": 1}


def make_family(config: Any, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()) -> Family:
    """Flow family: ``loss`` is the mean NLL in nats per dimension of the (dequantized) data (Dinh et al.
    2017, eq. 3); metrics also carry ``nll`` (nats per example, discrete bound for 8-bit data) and, for
    images, ``bits_per_dim``. ``sample`` takes ``temperature``."""
    del inputs  # no evaluation images or upstream runs are needed
    if spec.binary:
        raise ConfigError("flows need continuous or multi-level data, got binary data; "
                          "use an autoregressive or VAE family for binary images")
    s = Setup(build_flow(config.model, spec), spec, make_optimizer(config.optim),
              float(config.optim.get("ema_decay", 0.0)))
    temperature = TEMPERATURE.narrowed(default=TEMPERATURE.check(config.model.temperature))
    draw_jit = jax.jit(partial(draw, s), static_argnames="num")
    return Family(name="flows", init=partial(init_state, s), train_step=partial(train_step, s),
                  sample=partial(sample, temperature, draw_jit), evaluate=partial(evaluate, s),
                  sample_options=(temperature,))


def _global_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(tree)))
