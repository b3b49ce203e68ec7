"""Flow matching as a :class:`gm_jax.core.Family`: conditional flow matching training, ODE sampling and
exact likelihood evaluation.

Vectors (2-D toy data) use :class:`VelocityMLP`; images use ``gm_jax.nn.unet.UNet`` (a named size from
``unet_config``) with the time fed as ``1000 t``. Discrete data is dequantized for the likelihood only,
and the NLL reported is the discrete bound (``gm_jax.metrics.likelihood.discrete_nll_from_continuous``).
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
    uniform_dequantize,
)
from gm_jax.core.family import FamilyInputs
from gm_jax.core.options import Option
from gm_jax.flow_matching.losses import COUPLINGS, cfm_loss
from gm_jax.flow_matching.model import VelocityMLP
from gm_jax.flow_matching.ode import DIVERGENCES, SOLVERS, ode_log_likelihood, sample_ode
from gm_jax.flow_matching.paths import PATHS
from gm_jax.metrics.likelihood import discrete_nll_from_continuous, nats_to_bits_per_dim
from gm_jax.nn.unet import UNet, unet_config

SAMPLER = Option("sampler", "str", "flow matching: ODE solver", "heun", choices=SOLVERS)
STEPS = Option("steps", "int", "flow matching: steps of the fixed-step solvers (euler, heun)", 50, low=1)
RTOL = Option("rtol", "float", "flow matching: relative tolerance of dopri5", 1e-5, low=0.0, low_open=True)
ATOL = Option("atol", "float", "flow matching: absolute tolerance of dopri5", 1e-5, low=0.0, low_open=True)
SAMPLE_OPTIONS: tuple[Option, ...] = (SAMPLER, STEPS, RTOL, ATOL)


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model`` for flow matching.

    family: 'flow_matching'; path ('linear', 'vp'), sigma_min (linear path),
    beta_min/beta_max/t_eps (vp path, trained and sampled
    on ``t <= 1 - t_eps``), coupling ('independent', 'ot'); hidden/num_layers/time_dim: the MLP for
    vectors; unet: a ``gm_jax.nn.unet.unet_config`` size for images, unet_overrides: its changed fields
    (e.g. ``{"ch": 8}``); solver ('euler', 'heun', 'dopri5'),
    num_steps, rtol, atol, max_steps: sampling; eval_divergence ('auto', 'exact', 'hutchinson';
    'auto' = exact for vectors, Hutchinson for images), eval_solver: likelihood evaluation.
    """
    return ml_collections.ConfigDict(dict(
        family="flow_matching",
        path="linear", sigma_min=0.0, beta_min=0.1, beta_max=20.0, t_eps=1e-3, coupling="independent",
        hidden=128, num_layers=3, time_dim=32, unet="tiny", unet_overrides={},
        solver="heun", num_steps=50, rtol=1e-5, atol=1e-5, max_steps=1000,
        eval_divergence="auto", eval_solver="dopri5"))


def _path_args(cfg: Any) -> dict[str, float]:
    if cfg.path == "linear":
        return {"sigma_min": float(cfg.sigma_min)}
    return {"beta_min": float(cfg.beta_min), "beta_max": float(cfg.beta_max)}


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces of one flow-matching family: the velocity network (an MLP for vectors or a U-Net for
    images), the path's parameters, the optimizer and the data it models."""

    cfg: Any
    spec: DataSpec
    net: Any
    tx: Any
    ema_decay: float
    path_args: Mapping[str, float]
    t_max: float
    divergence: str


def check_config(cfg: Any, spec: DataSpec) -> None:
    """One-line ConfigErrors for unknown paths, couplings, solvers and out-of-range numbers."""
    check_choice("model.path", cfg.path, PATHS)
    check_choice("model.coupling", cfg.coupling, COUPLINGS)
    check_choice("model.solver", cfg.solver, SOLVERS)
    check_choice("model.eval_solver", cfg.eval_solver, SOLVERS)
    check_choice("model.eval_divergence", cfg.eval_divergence, ("auto", *DIVERGENCES))
    require(0.0 <= cfg.sigma_min < 1.0, f"model.sigma_min must be in [0, 1), got {cfg.sigma_min}")
    require(0.0 < cfg.t_eps < 0.5, f"model.t_eps must be in (0, 0.5), got {cfg.t_eps}")
    require(len(spec.shape) in (1, 3), f"flow matching takes vectors [D] or images [H, W, C], got {spec.shape}")
    require(int(cfg.num_steps) >= 1, f"model.num_steps must be >= 1, got {cfg.num_steps}")


def build_setup(config: Any, spec: DataSpec) -> Setup:
    """The network, optimizer, path arguments, time horizon and likelihood divergence of ``config``."""
    cfg = config.model
    if spec.is_image:
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(cfg.unet_overrides).items()}
        net = UNet(**unet_config(cfg.unet, **{"dropout": 0.0, **overrides}))
    else:
        net = VelocityMLP(cfg.hidden, cfg.num_layers, cfg.time_dim)
    divergence = cfg.eval_divergence
    if divergence == "auto":
        divergence = "hutchinson" if spec.is_image else "exact"
    return Setup(cfg, spec, net, make_optimizer(config.optim), float(config.optim.get("ema_decay", 0.0)),
                 _path_args(cfg), 1.0 if cfg.path == "linear" else 1.0 - float(cfg.t_eps), divergence)


def apply_net(s: Setup, params: Any, x: jax.Array, t: jax.Array) -> jax.Array:
    """The learned velocity ``v_θ(x, t)``; the U-Net gets the time as ``1000 t``."""
    if isinstance(s.net, UNet):
        return s.net.apply(params, x, 1000.0 * t)
    return s.net.apply(params, x, t)


def check_batch(s: Setup, x: jax.Array) -> None:
    require(tuple(x.shape[1:]) == tuple(s.spec.shape),
            f"batch['x'] has example shape {tuple(x.shape[1:])}, expected {tuple(s.spec.shape)}")


def init_state(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    x = jnp.asarray(example_batch["x"], jnp.float32)
    check_batch(s, x)
    params = jax.jit(s.net.init)(key, x[:1], jnp.zeros((1,)))
    return TrainState.create(key, params, s.tx, use_ema=s.ema_decay > 0)


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One gradient step on the CFM loss (Lipman et al. 2023, eq. 9); ``loss_per_dim`` = loss / D."""
    x1 = batch["x"]
    check_batch(s, x1)

    def loss_fn(params: Any) -> jax.Array:
        return cfm_loss(partial(apply_net, s, params), key, x1, s.cfg.path, s.cfg.coupling, s.t_max,
                        **s.path_args)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    state = apply_gradients(state, s.tx, grads, s.ema_decay)
    return state, {"loss": loss, "loss_per_dim": loss / math.prod(s.spec.shape)}


def integrate(s: Setup, params: Any, key: jax.Array, num: int, solver: str, num_steps: jax.Array,
              rtol: jax.Array, atol: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Noise ``x_0 ~ N(0, I)`` carried to ``t_max`` along ``dx/dt = v_θ(x, t)`` by ``solver``."""
    x0 = jax.random.normal(key, (num, *s.spec.shape))
    return sample_ode(partial(apply_net, s, params), x0, 0.0, s.t_max, solver=solver, num_steps=num_steps,
                      rtol=rtol, atol=atol, max_steps=int(s.cfg.max_steps))


def sample_options(cfg: Any) -> tuple[Option, ...]:
    """:data:`SAMPLE_OPTIONS` with the defaults of ``config.model``."""
    return (SAMPLER.narrowed(default=cfg.solver), STEPS.narrowed(default=int(cfg.num_steps)),
            RTOL.narrowed(default=float(cfg.rtol)), ATOL.narrowed(default=float(cfg.atol)))


def sample(s: Setup, options: tuple[Option, ...], integrate_jit: Any, params: Any, key: jax.Array, num: int,
           sampler: str | None = None, steps: int | None = None, rtol: float | None = None,
           atol: float | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """Integrate ``dx/dt = v(x, t)`` from noise at ``t = 0`` to data with the ODE solver ``sampler``
    ('euler', 'heun', 'dopri5'; defaults from config.model); ``steps`` (fixed-step solvers), ``rtol``,
    ``atol`` (dopri5) are passed as arrays (no recompilation when they change). ``integrate_jit``:
    :func:`integrate` jitted with ``num`` and ``solver`` static."""
    given = {"sampler": sampler, "steps": steps, "rtol": rtol, "atol": atol}
    v = {o.name: o.check(o.default if given[o.name] is None else given[o.name]) for o in options}
    x, info = integrate_jit(params, key, num, v["sampler"], jnp.asarray(v["steps"], jnp.int32),
                            jnp.float32(v["rtol"]), jnp.float32(v["atol"]))
    if s.spec.is_image:
        x = jnp.clip(x, *s.spec.value_range)
    return x, info


def log_likelihood_metrics(s: Setup, params: Any, x: jax.Array, key: jax.Array) -> Metrics:
    """``nll`` by the instantaneous change of variables (Chen et al. 2018; discrete bound for quantized
    data), ``bits_per_dim`` for images or discrete data, and the ``nfe`` of the likelihood ODE."""
    deq_key, probe_key = jax.random.split(key)
    spec, cfg, dims = s.spec, s.cfg, math.prod(s.spec.shape)
    if spec.levels > 0:
        x = uniform_dequantize(deq_key, x, spec.value_range, spec.levels)
    log_p, info = ode_log_likelihood(partial(apply_net, s, params), x, probe_key, s.divergence, 0.0, s.t_max,
                                     solver=cfg.eval_solver, num_steps=cfg.num_steps, rtol=cfg.rtol,
                                     atol=cfg.atol, max_steps=cfg.max_steps)
    nll = -log_p
    if spec.levels > 0:
        nll = discrete_nll_from_continuous(nll, dims, spec.value_range, spec.levels)
    metrics = {"nll": jnp.mean(nll), "nfe": info["nfe"]}
    if spec.is_image or spec.levels > 0:
        metrics["bits_per_dim"] = jnp.mean(nats_to_bits_per_dim(nll, dims))
    return metrics


def evaluate(s: Setup, metrics_jit: Any, params: Any, batch: Batch, key: jax.Array) -> Metrics:
    """``nll`` (nats per example; discrete bound for quantized data), ``bits_per_dim`` for images, and
    the ``nfe`` of the likelihood ODE (``metrics_jit``: :func:`log_likelihood_metrics` jitted), and the CFM
    regression ``loss`` of the batch (Lipman et al. 2023, eq. 9; times, sources and couplings from ``key``)."""
    check_batch(s, batch["x"])
    loss = cfm_loss(partial(apply_net, s, params), jax.random.fold_in(key, 1), batch["x"], s.cfg.path,
                    s.cfg.coupling, s.t_max, **s.path_args)
    return {**metrics_jit(params, batch["x"], key), "loss": loss}


def make_family(config: Any, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()) -> Family:
    """Flow-matching family: ``loss`` is the CFM regression loss (Lipman et al. 2023, eq. 9); sample
    integrates the learned ODE (info ``nfe``; options ``sampler``, ``steps``, ``rtol``, ``atol``); evaluate
    returns ``nll`` (nats per example) by the instantaneous change of variables (Chen et al. 2018) and
    ``bits_per_dim`` for images."""
    del inputs  # no evaluation images or upstream runs are needed
    check_config(config.model, spec)
    s = build_setup(config, spec)
    options = sample_options(config.model)
    integrate_jit = jax.jit(partial(integrate, s), static_argnames=("num", "solver"))
    return Family(name="flow_matching", init=partial(init_state, s), train_step=partial(train_step, s),
                  sample=partial(sample, s, options, integrate_jit),
                  evaluate=partial(evaluate, s, jax.jit(partial(log_likelihood_metrics, s))),
                  sample_options=options)
