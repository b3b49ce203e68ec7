"""VQ-VAE stage 2 as a :class:`gm_jax.core.Family`: a PixelCNN prior over the code grid of a trained VQ-VAE
(van den Oord et al. 2017, sec. 3.3 and 4.2), selected by ``config.model.prior_of = STAGE1_WORKDIR``.

The stage-1 VQ-VAE (config.json + latest checkpoint of ``prior_of``) is loaded once and kept, frozen, in
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

import json
import math
import os
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

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
from gm_jax.metrics.likelihood import discretized_gaussian_log_prob, nats_to_bits_per_dim
from gm_jax.vq.model import VQVAE
from gm_jax.vq.prior import code_prior, code_prior_init, code_prior_log_prob, sample_code_grid


def load_stage1(workdir: str, spec: DataSpec) -> tuple[ml_collections.ConfigDict, Any]:
    """Config and sampling parameters (``{"net", "codebook"}``) of the trained VQ-VAE in ``workdir``
    (its config.json and latest orbax checkpoint, restored against the abstract state of its family)."""
    from gm_jax.vq.family import make_family as make_stage1  # the stage-1 family of this package

    path = os.path.join(workdir, "config.json")
    require(os.path.isfile(path), f"model.prior_of={workdir!r} holds no config.json; train the VQ-VAE there "
            "first (`gm-jax train experiments/configs/vqvae_fashion_mnist.py --workdir DIR`)", CheckpointError)
    with open(path) as f:
        cfg1 = ml_collections.ConfigDict(json.load(f))
    require(cfg1.model.get("family") == "vqvae" and not cfg1.model.get("prior_of", ""),
            f"model.prior_of={workdir!r} must be a stage-1 VQ-VAE run (model.family='vqvae', no prior_of)")
    family1 = make_stage1(cfg1, spec)
    example = {"x": jnp.zeros((1, *spec.shape), jnp.float32)}
    abstract = jax.eval_shape(lambda b: family1.init(jax.random.key(0), b), example)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract)
    manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")))
    try:
        step = manager.latest_step()
        require(step is not None, f"model.prior_of={workdir!r} has no checkpoint; train the VQ-VAE first",
                CheckpointError)
        state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except CheckpointError:
        raise
    except Exception as e:  # orbax raises many types for unreadable or mismatched files
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot restore the VQ-VAE of model.prior_of={workdir!r} ({first}); "
                              "check that it was trained on the same image size") from None
    finally:
        manager.close()
    params = state.sampling_params()
    return cfg1, jax.tree.map(np.asarray, {"net": params["net"], "codebook": params["codebook"]})


def _param_labels(params: Any) -> dict[str, Any]:
    """'frozen' for every leaf of the stage-1 VQ-VAE, 'train' for the prior and the decoder scale."""
    return {name: jax.tree.map(lambda _, n=name: "frozen" if n == "vqvae" else "train", sub)
            for name, sub in params.items()}


def make_prior_family(config: Any, spec: DataSpec) -> Family:
    """Stage 2: PixelCNN prior over the codes of the VQ-VAE in ``config.model.prior_of``. Metrics: ``loss``
    (``−ELBO`` in nats per image), ``prior_nll`` (nats per code grid), ``prior_bits_per_code``, ``recon``
    (mean squared error), ``sigma`` and ``bits_per_dim`` (``−ELBO / (D ln 2)``, a bound on the discrete NLL)."""
    cfg = config.model
    require(spec.is_image and spec.levels >= 2,
            f"the VQ-VAE prior needs 8-bit images (levels >= 2), got shape {spec.shape}, levels {spec.levels}")
    if "data" in config:
        require(not config.data.get("dequantize", False) and config.data.get("binarize", "none") == "none",
                "the VQ-VAE prior uses a discretized decoder likelihood; set data.dequantize=False, "
                "data.binarize='none'")
    cfg1, frozen = load_stage1(str(cfg.prior_of), spec)
    if "data" in config:
        for field in ("name", "scale"):
            require(cfg1.data.get(field) == config.data.get(field),
                    f"data.{field}={config.data.get(field)!r} differs from the VQ-VAE's {cfg1.data.get(field)!r}; "
                    "train the prior on the VQ-VAE's data")
    m1 = cfg1.model
    net1 = VQVAE(tuple(m1.channels), int(m1.code_dim), spec.shape[-1])
    factor = 2 ** len(m1.channels)
    grid = (spec.shape[0] // factor, spec.shape[1] // factor)
    num_codes = int(m1.num_codes)
    prior = code_prior(num_codes, int(cfg.prior_hidden), int(cfg.prior_layers), int(cfg.prior_kernel_size))
    require(int(cfg.prior_layers) * (int(cfg.prior_kernel_size) // 2) >= max(grid) - 1,
            f"model.prior_layers * (prior_kernel_size // 2) must be >= {max(grid) - 1} so that every code "
            f"sees all earlier codes of the {grid[0]}x{grid[1]} grid")
    dims = int(np.prod(spec.shape))
    trained = make_optimizer(config.optim)
    tx = optax.multi_transform({"train": trained, "frozen": optax.set_to_zero()}, _param_labels)
    ema_decay = float(config.optim.get("ema_decay", 0.0))

    def encode_decode(vq: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        vq = jax.lax.stop_gradient(vq)
        k = net1.apply(vq["net"], x, vq["codebook"], method=VQVAE.encode)
        return k, net1.apply(vq["net"], k, vq["codebook"], method=VQVAE.decode)

    def terms(params: Any, x: jax.Array) -> dict[str, jax.Array]:
        k, x_hat = encode_decode(params["vqvae"], x)
        prior_log_p = code_prior_log_prob(prior, params["prior"], k)
        dec = discretized_gaussian_log_prob(x, x_hat, params["log_sigma"], spec.value_range, spec.levels)
        neg_elbo = -(prior_log_p + jnp.sum(dec.reshape(x.shape[0], -1), axis=1))
        return {"loss": jnp.mean(neg_elbo), "prior_nll": -jnp.mean(prior_log_p),
                "prior_bits_per_code": -jnp.mean(prior_log_p) / (math.prod(grid) * math.log(2.0)),
                "recon": jnp.mean((x_hat - x) ** 2), "sigma": jnp.exp(params["log_sigma"]),
                "bits_per_dim": jnp.mean(nats_to_bits_per_dim(neg_elbo, dims))}

    def init(key: jax.Array, example_batch: Batch) -> TrainState:
        x = jnp.asarray(example_batch["x"], jnp.float32)
        vq = jax.tree.map(jnp.asarray, frozen)
        _, x_hat = encode_decode(vq, x)
        log_sigma = 0.5 * jnp.log(jnp.maximum(jnp.mean((x_hat - x) ** 2), 1e-6))
        params = {"prior": code_prior_init(prior, key, grid), "vqvae": vq, "log_sigma": log_sigma}
        return TrainState.create(key, params, tx, use_ema=ema_decay > 0)

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        del key
        (_, metrics), grads = jax.value_and_grad(lambda p: (lambda m: (m["loss"], m))(terms(p, batch["x"])),
                                                 has_aux=True)(state.params)
        return apply_gradients(state, tx, grads, ema_decay), metrics

    def evaluate(params: Any, batch: Batch, key: jax.Array) -> Metrics:
        """``−ELBO`` (``loss``, nats per image), ``bits_per_dim``, the prior's NLL and the reconstruction."""
        del key
        return terms(params, batch["x"])

    @partial(jax.jit, static_argnames="num")
    def _sample(params: Any, key: jax.Array, num: int, t: jax.Array) -> tuple[jax.Array, dict[str, int]]:
        k, info = sample_code_grid(prior, params["prior"], key, num, grid, t)
        vq = params["vqvae"]
        x = net1.apply(vq["net"], k, vq["codebook"], method=VQVAE.decode)
        return jnp.clip(x, *spec.value_range), info

    def sample(params: Any, key: jax.Array, num: int,
               temperature: float | jax.Array | None = None) -> tuple[jax.Array, dict[str, Any]]:
        """``num`` images: code grids from the prior at ``temperature`` (default ``config.model.temperature``),
        decoded by the VQ-VAE decoder (its mean). ``info["nfe"]`` = h·w prior passes (plus one decoder pass)."""
        t = jnp.asarray(cfg.temperature if temperature is None else temperature, jnp.float32)
        require(float(t) > 0, f"temperature must be > 0, got {float(t)}")
        return _sample(params, key, num, t)

    return Family(name="vqvae_prior", init=init, train_step=train_step, sample=sample, evaluate=evaluate)
