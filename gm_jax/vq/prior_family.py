"""VQ-VAE stage 2 as a :class:`gm_jax.core.Family`: a PixelCNN prior over the code grid of a trained VQ-VAE
(van den Oord et al. 2017, sec. 3.3 and 4.2), selected by ``config.model.prior_of = STAGE1_WORKDIR``.

The stage-1 VQ-VAE run named by ``prior_of`` is loaded by the train layer (config and sampling parameters,
``FamilyInputs.upstream["model.prior_of"]``; this module reads no files) and kept, frozen, in
``params["vqvae"]`` (its optimizer update is zero), so a stage-2 checkpoint holds everything ``sample``
needs. Each training batch of images is encoded to its code grid ``k(x)`` and the prior
(:mod:`gm_jax.vq.prior`) is fitted by maximum likelihood.

Likelihood. With the deterministic one-hot posterior ``q(k | x) = [k = k(x)]`` the ELBO is
``log p(x) ≥ log p(x | k(x)) + log p(k(x))`` (``log q = 0``; van den Oord et al. 2017, sec. 3.2). The decoder
likelihood is a discretized Gaussian over the 8-bit levels centred at the reconstruction ``D(e_k)`` with one
learned scale ``σ`` (Ho et al. 2020, eq. 13: bins of half-width ``(hi − lo)/(2(L − 1))`` around each level,
the outer bins extended to ±∞), so ``−ELBO`` bounds the discrete NLL and gives bits/dim comparable with the
exact-likelihood families. ``σ`` starts at the root mean squared reconstruction error of the first training
batch (its maximum-likelihood value there) and is trained with the prior.

Sampling: draw ``k ~ p(k)`` position by position (NFE = h·w), return the decoder mean ``D(e_k)``.
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
import optax

from gm_jax.core import (
    Batch,
    CheckpointError,
    DataSpec,
    Family,
    Metrics,
    TrainState,
    apply_gradients,
    make_optimizer,
    require,
)
from gm_jax.core.family import FamilyInputs
from gm_jax.core.options import Option
from gm_jax.metrics.likelihood import discretized_gaussian_log_prob, nats_to_bits_per_dim
from gm_jax.vq.model import VQVAE
from gm_jax.vq.prior import code_prior, code_prior_init, code_prior_log_prob, sample_code_grid

TEMPERATURE = Option("temperature", "float", "VQ-VAE prior: softmax temperature of every code draw", 1.0,
                     low=0.0, low_open=True)
SAMPLE_OPTIONS: tuple[Option, ...] = (TEMPERATURE,)
UPSTREAM_FIELD = "model.prior_of"


def stage1(config: Any, inputs: FamilyInputs) -> tuple[ml_collections.ConfigDict, Any]:
    """Config and sampling parameters (``{"net", "codebook"}``, host arrays) of the stage-1 VQ-VAE that the
    train layer loaded from ``config.model.prior_of`` into ``inputs.upstream["model.prior_of"]``; one-line
    errors when it is missing or is not a stage-1 VQ-VAE run."""
    workdir = str(config.model.prior_of)
    up = inputs.upstream.get(UPSTREAM_FIELD)
    require(up is not None, f"model.prior_of={workdir!r} was not loaded; train the VQ-VAE there first "
            "(`gm-jax train experiments/configs/vqvae_fashion_mnist.py --workdir DIR`)", CheckpointError)
    cfg1 = ml_collections.ConfigDict(dict(up.config))
    m1 = cfg1.get("model", ml_collections.ConfigDict())
    require(m1.get("family") == "vqvae" and not m1.get("prior_of", ""),
            f"model.prior_of={workdir!r} must be a stage-1 VQ-VAE run (model.family='vqvae', no prior_of)")
    require(isinstance(up.params, Mapping) and "net" in up.params and "codebook" in up.params,
            f"model.prior_of={workdir!r} holds no VQ-VAE parameters (net, codebook); retrain the VQ-VAE there",
            CheckpointError)
    return cfg1, jax.tree.map(np.asarray, {"net": up.params["net"], "codebook": up.params["codebook"]})


def _param_labels(params: Any) -> dict[str, Any]:
    """'frozen' for every leaf of the stage-1 VQ-VAE, 'train' for the prior and the decoder scale."""
    return {name: jax.tree.map(lambda _, n=name: "frozen" if n == "vqvae" else "train", sub)
            for name, sub in params.items()}


def check_data(config: Any, spec: DataSpec, cfg1: ml_collections.ConfigDict | None = None) -> None:
    """8-bit images, no dequantization or binarization, and (given the stage-1 config) the same dataset."""
    require(spec.is_image and spec.levels >= 2,
            f"the VQ-VAE prior needs 8-bit images (levels >= 2), got shape {spec.shape}, levels {spec.levels}")
    if "data" not in config:
        return
    require(not config.data.get("dequantize", False) and config.data.get("binarize", "none") == "none",
            "the VQ-VAE prior uses a discretized decoder likelihood; set data.dequantize=False, "
            "data.binarize='none'")
    if cfg1 is not None and "data" in cfg1:
        for field in ("name", "scale"):
            require(cfg1.data.get(field) == config.data.get(field),
                    f"data.{field}={config.data.get(field)!r} differs from the VQ-VAE's {cfg1.data.get(field)!r}; "
                    "train the prior on the VQ-VAE's data")


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces of the stage-2 family: the stage-1 network, the prior, the code grid, the optimizer
    (the frozen VQ-VAE gets a zero update) and the stage-1 parameters it starts from."""

    cfg: Any
    spec: DataSpec
    net1: VQVAE
    prior: Any
    grid: tuple[int, int]
    tx: Any
    ema_decay: float
    frozen: Any


def build_setup(config: Any, spec: DataSpec, cfg1: ml_collections.ConfigDict, frozen: Any) -> Setup:
    """The prior over the ``(H / 2^L, W / 2^L)`` code grid of the stage-1 VQ-VAE ``cfg1``."""
    cfg, m1 = config.model, cfg1.model
    factor = 2 ** len(m1.channels)
    grid = (spec.shape[0] // factor, spec.shape[1] // factor)
    require(int(cfg.prior_layers) * (int(cfg.prior_kernel_size) // 2) >= max(grid) - 1,
            f"model.prior_layers * (prior_kernel_size // 2) must be >= {max(grid) - 1} so that every code "
            f"sees all earlier codes of the {grid[0]}x{grid[1]} grid")
    prior = code_prior(int(m1.num_codes), int(cfg.prior_hidden), int(cfg.prior_layers), int(cfg.prior_kernel_size))
    tx = optax.multi_transform({"train": make_optimizer(config.optim), "frozen": optax.set_to_zero()},
                               _param_labels)
    return Setup(cfg, spec, VQVAE(tuple(m1.channels), int(m1.code_dim), spec.shape[-1]), prior, grid, tx,
                 float(config.optim.get("ema_decay", 0.0)), frozen)


def encode_decode(s: Setup, vq: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The code grid ``k(x)`` of the frozen VQ-VAE and its reconstruction ``D(e_k)``."""
    vq = jax.lax.stop_gradient(vq)
    k = s.net1.apply(vq["net"], x, vq["codebook"], method=VQVAE.encode)
    return k, s.net1.apply(vq["net"], k, vq["codebook"], method=VQVAE.decode)


def terms(s: Setup, params: Any, x: jax.Array) -> dict[str, jax.Array]:
    """``loss = −ELBO = −log p(k(x)) − log p(x | k(x))`` (nats per image; see the module docstring) and the
    metrics ``prior_nll``, ``prior_bits_per_code``, ``recon``, ``sigma``, ``bits_per_dim``."""
    k, x_hat = encode_decode(s, params["vqvae"], x)
    prior_log_p = code_prior_log_prob(s.prior, params["prior"], k)
    dec = discretized_gaussian_log_prob(x, x_hat, params["log_sigma"], s.spec.value_range, s.spec.levels)
    neg_elbo = -(prior_log_p + jnp.sum(dec.reshape(x.shape[0], -1), axis=1))
    return {"loss": jnp.mean(neg_elbo), "prior_nll": -jnp.mean(prior_log_p),
            "prior_bits_per_code": -jnp.mean(prior_log_p) / (math.prod(s.grid) * math.log(2.0)),
            "recon": jnp.mean((x_hat - x) ** 2), "sigma": jnp.exp(params["log_sigma"]),
            "bits_per_dim": jnp.mean(nats_to_bits_per_dim(neg_elbo, math.prod(s.spec.shape)))}


def init_state(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    """Prior parameters, the frozen VQ-VAE and ``log σ`` at the RMS reconstruction error of the batch."""
    x = jnp.asarray(example_batch["x"], jnp.float32)
    vq = jax.tree.map(jnp.asarray, s.frozen)
    _, x_hat = encode_decode(s, vq, x)
    log_sigma = 0.5 * jnp.log(jnp.maximum(jnp.mean((x_hat - x) ** 2), 1e-6))
    params = {"prior": code_prior_init(s.prior, key, s.grid), "vqvae": vq, "log_sigma": log_sigma}
    return TrainState.create(key, params, s.tx, use_ema=s.ema_decay > 0)


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One gradient step on ``−ELBO`` (the VQ-VAE's update is zero)."""
    del key

    def loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        metrics = terms(s, params, batch["x"])
        return metrics["loss"], metrics

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return apply_gradients(state, s.tx, grads, s.ema_decay), metrics


def evaluate(s: Setup, params: Any, batch: Batch, key: jax.Array) -> Metrics:
    """``−ELBO`` (``loss``, nats per image), ``bits_per_dim``, the prior's NLL and the reconstruction."""
    del key
    return terms(s, params, batch["x"])


def draw(s: Setup, params: Any, key: jax.Array, num: int, t: jax.Array) -> tuple[jax.Array, dict[str, int]]:
    """Code grids ``k ~ p(k)`` at temperature ``t`` (h·w prior passes), decoded to the mean ``D(e_k)``."""
    k, info = sample_code_grid(s.prior, params["prior"], key, num, s.grid, t)
    vq = params["vqvae"]
    x = s.net1.apply(vq["net"], k, vq["codebook"], method=VQVAE.decode)
    return jnp.clip(x, *s.spec.value_range), info


def sample(temperature_option: Option, draw_jit: Any, params: Any, key: jax.Array, num: int,
           temperature: float | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` images: code grids from the prior at ``temperature`` (default ``config.model.temperature``),
    decoded by the VQ-VAE decoder (its mean). ``info["nfe"]`` = h·w prior passes (plus one decoder pass).
    ``draw_jit``: :func:`draw` jitted with ``num`` static."""
    t = temperature_option.check(temperature_option.default if temperature is None else temperature)
    return draw_jit(params, key, num, jnp.float32(t))


def make_prior_family(config: Any, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()) -> Family:
    """Stage 2: PixelCNN prior over the codes of the VQ-VAE run ``inputs.upstream["model.prior_of"]``.
    Metrics: ``loss`` (``−ELBO`` in nats per image), ``prior_nll`` (nats per code grid),
    ``prior_bits_per_code``, ``recon`` (mean squared error), ``sigma`` and ``bits_per_dim``
    (``−ELBO / (D ln 2)``, a bound on the discrete NLL). ``sample`` takes ``temperature``."""
    check_data(config, spec)
    cfg1, frozen = stage1(config, inputs)
    check_data(config, spec, cfg1)
    s = build_setup(config, spec, cfg1, frozen)
    temperature = TEMPERATURE.narrowed(default=TEMPERATURE.check(config.model.temperature))
    draw_jit = jax.jit(partial(draw, s), static_argnames="num")
    return Family(name="vqvae_prior", init=partial(init_state, s), train_step=partial(train_step, s),
                  sample=partial(sample, temperature, draw_jit), evaluate=partial(evaluate, s),
                  sample_options=(temperature,))
