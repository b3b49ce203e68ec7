"""The trainable classical models behind the common step protocol: ``"gmm"`` (Gaussian mixture, EM),
``"bernoulli_mixture"`` (mixture of Bernoullis, EM) and ``"rbm"`` (CD-k / persistent CD).

EM is a full-batch method; here each ``train_step`` does one EM iteration that treats the batch it is given
as the data set (no stochastic/online EM). With a fixed full-data batch this is exact EM; with changing
mini-batches the parameters follow the EM fixed point of each batch. ``state.params`` holds the model
parameters, ``state.opt_state`` is ``()`` for EM and the optax state of ``config.optim`` for the RBM (whose
learning rate, momentum and schedule come from ``config.optim`` like every other family), and
``state.extra`` the RBM's persistent chains. Examples are flattened to vectors internally.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gm_jax.classical import mixtures, rbm
from gm_jax.core.errors import check_choice, require
from gm_jax.core.family import Batch, DataSpec, Family, FamilyInputs, Metrics
from gm_jax.core.optim import make_optimizer
from gm_jax.core.options import Option
from gm_jax.core.state import TrainState

FAMILIES = ("gmm", "bernoulli_mixture", "rbm")
STEPS = Option("steps", "int", "RBM: block Gibbs sweeps of each sampling chain", 1000, low=1)
SAMPLE_OPTIONS: tuple[Option, ...] = (STEPS,)


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model`` for the classical family.

    family: 'gmm', 'bernoulli_mixture' or 'rbm'. Mixtures: num_components; covariance_type ('full',
    'diag', 'spherical') and reg_covar (variance added to every covariance) for 'gmm'; smoothing (Beta
    pseudo-count) for 'bernoulli_mixture'. RBM: num_hidden, cd_steps (k of CD-k), persistent (PCD),
    num_chains (persistent chains), weight_decay (L2 penalty on W, part of the CD ascent direction),
    init_scale (std of initial weights), ais_chains / ais_betas / ais_schedule ('linear' or 'sm08', see
    ``rbm.ais_betas``) for the AIS of evaluate, sample_steps (Gibbs steps in sample). The RBM's step size
    comes from ``config.optim`` (learning_rate, name, momentum, schedule; the RBM configs use
    ``optim.name='sgd'`` with momentum, Hinton 2010 sec. 9).
    """
    return ml_collections.ConfigDict(dict(
        family="rbm",
        num_components=10, covariance_type="diag", reg_covar=1e-3, smoothing=1.0,
        num_hidden=64, cd_steps=1, persistent=True, num_chains=64, weight_decay=1e-4, init_scale=0.01,
        ais_chains=64, ais_betas=1000, ais_schedule="sm08", sample_steps=1000))


def check_config(config: Any, spec: DataSpec) -> None:
    """One-line ConfigErrors for a family name, data or RBM sizes this module cannot train."""
    cfg = config.model
    kind = cfg.family
    check_choice("model.family", kind, FAMILIES)
    if kind != "gmm":
        require(spec.binary, f"model.family={kind!r} needs binary data (values in {{0, 1}}); binarize the "
                "dataset or use model.family='gmm'")
    if kind == "rbm":
        require(getattr(config, "optim", None) is not None, "model.family='rbm' needs config.optim (its "
                "learning rate); start from gm_jax.train.config.base_config()")
        require(cfg.num_hidden >= 1 and cfg.cd_steps >= 1 and cfg.num_chains >= 1,
                f"model.num_hidden, model.cd_steps and model.num_chains must be >= 1, got {cfg.num_hidden}, "
                f"{cfg.cd_steps}, {cfg.num_chains}")
        require(int(cfg.sample_steps) >= 1, f"model.sample_steps must be >= 1, got {cfg.sample_steps}")


def flat_batch(spec: DataSpec, kind: str, batch: Batch) -> jax.Array:
    """``batch['x']`` as float32 vectors ``[B, D]`` (checked binary for the Bernoulli models)."""
    x = jnp.asarray(batch["x"], jnp.float32)
    require(tuple(x.shape[1:]) == tuple(spec.shape),
            f"batch['x'] has example shape {tuple(x.shape[1:])}, expected {tuple(spec.shape)}")
    if kind != "gmm":
        mixtures.check_binary(x)
    return x.reshape(x.shape[0], math.prod(spec.shape))


def as_examples(spec: DataSpec, kind: str, x: jax.Array) -> jax.Array:
    """Flat samples ``[N, D]`` back in the example shape; Gaussian-mixture images clipped to the range."""
    x = x.reshape((x.shape[0], *spec.shape))
    if kind == "gmm" and spec.is_image:
        x = jnp.clip(x, *spec.value_range)
    return x


def sample_mixture(spec: DataSpec, kind: str, draw: Any, params: Any, key: jax.Array,
                   num: int) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` ancestral samples of a mixture (``draw(params, key, num) -> [num, D]``); no options."""
    return as_examples(spec, kind, draw(params, key, num)), {}


def sample_rbm(spec: DataSpec, steps_option: Option, params: Any, key: jax.Array, num: int,
               steps: int | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` RBM samples after ``steps`` block Gibbs sweeps from uniform noise (default
    ``config.model.sample_steps``)."""
    steps = steps_option.check(steps_option.default if steps is None else steps)
    return as_examples(spec, "rbm", rbm.sample_rbm(params, key, num, steps)[0]), {}


def make_family(config: Any, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()) -> Family:
    """The family named by ``config.model.family``. Metrics: ``loss`` (mean negative log-likelihood of the
    batch in nats per example for the mixtures; reconstruction error for the RBM); ``evaluate`` returns
    ``nll`` in nats per example (for the RBM ``mean F(v) + log Z`` with ``log Z`` from AIS, plus ``log_z``
    and its standard error ``log_z_stderr``). The RBM's sample takes ``steps`` (Gibbs sweeps)."""
    del inputs  # no evaluation images or upstream runs are needed
    check_config(config, spec)
    cfg, kind = config.model, config.model.family
    dims = math.prod(spec.shape)
    if kind == "rbm":
        init, train_step, evaluate = _rbm_family(cfg, dims, config.optim)
        options = (STEPS.narrowed(default=int(cfg.sample_steps)),)
        sample = partial(sample_rbm, spec, options[0])
    else:
        init, train_step, draw, evaluate = {"gmm": _gmm_family, "bernoulli_mixture": _bernoulli_family}[kind](cfg)
        options = ()
        sample = partial(sample_mixture, spec, kind, draw)
    flat = partial(flat_batch, spec, kind)
    return Family(name=kind, init=lambda key, batch: init(key, flat(batch)),
                  train_step=lambda state, batch, key: train_step(state, flat(batch), key),
                  sample=sample, evaluate=lambda params, batch, key: evaluate(params, flat(batch), key),
                  sample_options=options)


def _em_state(key: jax.Array, params: Any) -> TrainState:
    return TrainState.create(key, params)


def _gmm_family(cfg: Any) -> tuple[Any, Any, Any, Any]:
    cov = cfg.covariance_type
    em = mixtures.gaussian_mixture_em(cfg.num_components, cov, cfg.reg_covar)

    def init(key: jax.Array, x: jax.Array) -> TrainState:
        return _em_state(key, em.init(key, x))

    def train_step(state: TrainState, x: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
        params, m = em.step(state.params, x)
        return state.replace(step=state.step + 1, params=params), {"loss": -m["log_likelihood"], **m}

    def sample(params: Any, key: jax.Array, num: int) -> jax.Array:
        return mixtures.gmm_sample(params, key, num, cov)[0]

    def evaluate(params: Any, x: jax.Array, key: jax.Array) -> Metrics:
        return {"nll": -jnp.mean(mixtures.gmm_log_density(params, x, cov))}

    return init, train_step, sample, evaluate


def _bernoulli_family(cfg: Any) -> tuple[Any, Any, Any, Any]:
    em = mixtures.bernoulli_mixture_em(cfg.num_components, cfg.smoothing)

    def init(key: jax.Array, x: jax.Array) -> TrainState:
        return _em_state(key, em.init(key, x))

    def train_step(state: TrainState, x: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
        params, m = em.step(state.params, x)
        return state.replace(step=state.step + 1, params=params), {"loss": -m["log_likelihood"], **m}

    def sample(params: Any, key: jax.Array, num: int) -> jax.Array:
        return mixtures.bernoulli_mixture_sample(params, key, num)[0]

    def evaluate(params: Any, x: jax.Array, key: jax.Array) -> Metrics:
        return {"nll": -jnp.mean(mixtures.bernoulli_mixture_log_density(params, x))}

    return init, train_step, sample, evaluate


def _rbm_family(cfg: Any, dims: int, optim: Any) -> tuple[Any, Any, Any]:
    cd = rbm.contrastive_divergence(cfg.cd_steps, weight_decay=cfg.weight_decay, persistent=cfg.persistent,
                                    optimizer=make_optimizer(optim))

    def init(key: jax.Array, x: jax.Array) -> TrainState:
        kw, kc = jax.random.split(key)
        params = rbm.rbm_init(kw, dims, cfg.num_hidden, cfg.init_scale, rbm.base_rate_visible_bias(x))
        cd_state = cd.init(params, kc, cfg.num_chains)
        return TrainState.create(key, params, extra=cd_state.chains).replace(opt_state=cd_state.opt_state)

    def train_step(state: TrainState, x: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
        params, cd_state, m = cd.step(state.params, rbm.CDState(state.opt_state, state.extra), x, key)
        state = state.replace(step=state.step + 1, params=params, opt_state=cd_state.opt_state,
                              extra=cd_state.chains)
        return state, {"loss": m["reconstruction_error"], **m}

    def evaluate(params: Any, x: jax.Array, key: jax.Array) -> Metrics:
        """AIS (Salakhutdinov & Murray 2008) with the base-rate model of this batch's marginals."""
        log_z, stderr = rbm.ais_log_partition(params, key, rbm.base_rate_visible_bias(x), cfg.ais_chains,
                                              cfg.ais_betas, cfg.get("ais_schedule", "linear"))
        return {"nll": rbm.negative_log_likelihood(params, x, log_z), "log_z": log_z,
                "log_z_stderr": stderr}

    return init, train_step, evaluate
