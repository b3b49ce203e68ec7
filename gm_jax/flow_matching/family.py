"""Flow matching as a :class:`gm_jax.core.Family`: conditional flow matching training, ODE sampling and
exact likelihood evaluation.

Vectors (2-D toy data) use :class:`VelocityMLP`; images use ``gm_jax.nn.unet.UNet`` (a named size from
``unet_config``) with the time fed as ``1000 t``. Discrete data is dequantized for the likelihood only,
and the NLL reported is the discrete bound (``gm_jax.metrics.likelihood.discrete_nll_from_continuous``).
"""

from __future__ import annotations

import math
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
from gm_jax.flow_matching.losses import COUPLINGS, cfm_loss
from gm_jax.flow_matching.model import VelocityMLP
from gm_jax.flow_matching.ode import DIVERGENCES, SOLVERS, ode_log_likelihood, sample_ode
from gm_jax.flow_matching.paths import PATHS
from gm_jax.metrics.likelihood import discrete_nll_from_continuous, nats_to_bits_per_dim
from gm_jax.nn.unet import UNet, unet_config


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


def make_family(config: Any, spec: DataSpec) -> Family:
    """Flow-matching family: ``loss`` is the CFM regression loss (Lipman et al. 2023, eq. 9); sample
    integrates the learned ODE (info ``nfe``); evaluate returns ``nll`` (nats per example) by the
    instantaneous change of variables (Chen et al. 2018) and ``bits_per_dim`` for images."""
    cfg = config.model
    check_choice("model.path", cfg.path, PATHS)
    check_choice("model.coupling", cfg.coupling, COUPLINGS)
    check_choice("model.solver", cfg.solver, SOLVERS)
    check_choice("model.eval_solver", cfg.eval_solver, SOLVERS)
    check_choice("model.eval_divergence", cfg.eval_divergence, ("auto", *DIVERGENCES))
    require(0.0 <= cfg.sigma_min < 1.0, f"model.sigma_min must be in [0, 1), got {cfg.sigma_min}")
    require(0.0 < cfg.t_eps < 0.5, f"model.t_eps must be in (0, 0.5), got {cfg.t_eps}")
    require(len(spec.shape) in (1, 3), f"flow matching takes vectors [D] or images [H, W, C], got {spec.shape}")
    path_args = _path_args(cfg)
    t_max = 1.0 if cfg.path == "linear" else 1.0 - float(cfg.t_eps)
    if spec.is_image:
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(cfg.unet_overrides).items()}
        unet = UNet(**unet_config(cfg.unet, **{"dropout": 0.0, **overrides}))
        net = None
    else:
        net = VelocityMLP(cfg.hidden, cfg.num_layers, cfg.time_dim)
        unet = None
    tx = make_optimizer(config.optim)
    ema_decay = float(config.optim.get("ema_decay", 0.0))
    dims = math.prod(spec.shape)
    divergence = cfg.eval_divergence
    if divergence == "auto":
        divergence = "hutchinson" if spec.is_image else "exact"

    def apply_net(params: Any, x: jax.Array, t: jax.Array) -> jax.Array:
        if unet is not None:
            return unet.apply(params, x, 1000.0 * t)
        return net.apply(params, x, t)

    def check_batch(x: jax.Array) -> None:
        require(tuple(x.shape[1:]) == tuple(spec.shape),
                f"batch['x'] has example shape {tuple(x.shape[1:])}, expected {tuple(spec.shape)}")

    def init(key: jax.Array, example_batch: Batch) -> TrainState:
        x = jnp.asarray(example_batch["x"], jnp.float32)
        check_batch(x)
        module = unet if unet is not None else net
        params = jax.jit(module.init)(key, x[:1], jnp.zeros((1,)))
        return TrainState.create(key, params, tx, use_ema=ema_decay > 0)

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        x1 = batch["x"]
        check_batch(x1)

        def loss_fn(params: Any) -> jax.Array:
            return cfm_loss(partial(apply_net, params), key, x1, cfg.path, cfg.coupling, t_max, **path_args)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        state = apply_gradients(state, tx, grads, ema_decay)
        return state, {"loss": loss, "loss_per_dim": loss / dims}

    @partial(jax.jit, static_argnames=("num", "solver", "max_steps"))
    def _sample(params: Any, key: jax.Array, num: int, solver: str, num_steps: jax.Array, rtol: jax.Array,
                atol: jax.Array, max_steps: int) -> tuple[jax.Array, dict[str, jax.Array]]:
        x0 = jax.random.normal(key, (num, *spec.shape))
        return sample_ode(partial(apply_net, params), x0, 0.0, t_max, solver=solver, num_steps=num_steps,
                          rtol=rtol, atol=atol, max_steps=max_steps)

    def sample(params: Any, key: jax.Array, num: int, sampler: str | None = None,
               steps: jax.Array | int | None = None, rtol: float | None = None,
               atol: float | None = None) -> tuple[jax.Array, dict[str, Any]]:
        """Integrate ``dx/dt = v(x, t)`` from noise at ``t = 0`` to data with the ODE solver ``sampler``
        ('euler', 'heun', 'dopri5'; defaults from config.model, like every family's ``sampler``/``steps``);
        ``steps``, ``rtol``, ``atol`` are arrays (no recompilation when they change)."""
        solver = cfg.solver if sampler is None else sampler
        check_choice("sampler (ODE solver)", solver, SOLVERS)
        steps = cfg.num_steps if steps is None else steps
        require(int(steps) >= 1, f"num_steps must be >= 1, got {int(steps)}")
        x, info = _sample(params, key, num, solver, jnp.asarray(steps, jnp.int32),
                          jnp.float32(cfg.rtol if rtol is None else rtol),
                          jnp.float32(cfg.atol if atol is None else atol), int(cfg.max_steps))
        if spec.is_image:
            x = jnp.clip(x, *spec.value_range)
        return x, info

    def evaluate(params: Any, batch: Batch, key: jax.Array) -> Metrics:
        """``nll`` (nats per example; discrete bound for quantized data), ``bits_per_dim`` for images, and
        the ``nfe`` of the likelihood ODE."""
        check_batch(batch["x"])
        return _evaluate(params, batch["x"], key)

    @jax.jit
    def _evaluate(params: Any, x: jax.Array, key: jax.Array) -> Metrics:
        deq_key, probe_key = jax.random.split(key)
        if spec.levels > 0:
            x = uniform_dequantize(deq_key, x, spec.value_range, spec.levels)
        log_p, info = ode_log_likelihood(partial(apply_net, params), x, probe_key, divergence, 0.0, t_max,
                                         solver=cfg.eval_solver, num_steps=cfg.num_steps, rtol=cfg.rtol,
                                         atol=cfg.atol, max_steps=cfg.max_steps)
        nll = -log_p
        if spec.levels > 0:
            nll = discrete_nll_from_continuous(nll, dims, spec.value_range, spec.levels)
        metrics = {"nll": jnp.mean(nll), "nfe": info["nfe"]}
        if spec.is_image or spec.levels > 0:
            metrics["bits_per_dim"] = jnp.mean(nats_to_bits_per_dim(nll, dims))
        return metrics

    return Family(name="flow_matching", init=init, train_step=train_step, sample=sample, evaluate=evaluate)
