"""VQ-VAE stage 1 as a :class:`gm_jax.core.Family`: train encoder, decoder and codebook on reconstruction.

Loss (van den Oord et al. 2017, eq. 3): ``‖x − D(z_q)‖²`` (mean over pixels) ``+ β ‖z_e − sg[e]‖²``, plus the
codebook term ``‖sg[z_e] − e‖²`` when ``model.codebook_update='gradient'``. With ``'ema'`` (default; appendix
A.1, Razavi et al. 2019) the statistics ``N`` and ``m`` live in ``state.extra``; after each optimizer step
:func:`gm_jax.vq.quantizer.ema_codebook_update` moves them and writes ``e = m / Ñ`` into ``params['codebook']``
(which gets no gradient), so evaluation and decoding read the codebook from the parameters.
Stage 1 has no ``sample``. Stage 2 — a PixelCNN prior over the code grid, trained on the codes of a
stage-1 run — is the same family with ``model.prior_of = STAGE1_WORKDIR`` (:mod:`gm_jax.vq.prior_family`);
it samples new images.
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
from gm_jax.vq.model import VQVAE
from gm_jax.vq.prior_family import SAMPLE_OPTIONS as PRIOR_SAMPLE_OPTIONS
from gm_jax.vq.prior_family import make_prior_family
from gm_jax.vq.quantizer import (
    EmaCodebookState,
    code_usage,
    codebook_perplexity,
    ema_codebook_init,
    ema_codebook_update,
    vq_losses,
)

SAMPLE_OPTIONS: tuple[Option, ...] = PRIOR_SAMPLE_OPTIONS  # stage 1 does not sample; stage 2 takes these


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model`` for the VQ-VAE.

    channels: encoder widths, one stride-2 level each; code_dim: D of each code; num_codes: K;
    beta: commitment weight; codebook_update: 'ema' or 'gradient'; codebook_decay: EMA decay γ;
    codebook_epsilon: Laplace smoothing ε.
    Stage 2 (``prior_of``: work directory of a trained stage-1 run; '' trains stage 1): prior_hidden,
    prior_layers, prior_kernel_size of the gated PixelCNN over codes, temperature: default sampling
    temperature. In stage 2 the VQ-VAE fields above are read from the stage-1 run, not from this config.
    """
    return ml_collections.ConfigDict(dict(
        family="vqvae", channels=(32, 64), code_dim=16, num_codes=64, beta=0.25, codebook_update="ema",
        codebook_decay=0.99, codebook_epsilon=1e-5, prior_of="", prior_hidden=64, prior_layers=6,
        prior_kernel_size=3, temperature=1.0))


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces of the stage-1 family: the VQ-VAE, its optimizer and its config."""

    cfg: Any
    net: VQVAE
    tx: Any
    ema_decay: float

    @property
    def ema_codebook(self) -> bool:
        return self.cfg.codebook_update == "ema"


def check_config(cfg: Any, spec: DataSpec) -> None:
    """Images whose size the encoder's stride-2 levels divide, a known codebook update, K >= 2."""
    require(spec.is_image, f"the VQ-VAE models images [H, W, C], got example shape {spec.shape}")
    check_choice("model.codebook_update", cfg.codebook_update, ("ema", "gradient"))
    factor = 2 ** len(cfg.channels)
    require(spec.shape[0] % factor == 0 and spec.shape[1] % factor == 0,
            f"image size {spec.shape[:2]} must be divisible by 2^len(model.channels) = {factor}; "
            "use fewer model.channels")
    require(cfg.num_codes >= 2, f"model.num_codes must be >= 2, got {cfg.num_codes}")


def init_state(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    """Network parameters, a codebook of K encoder outputs of the example batch (drawn with replacement)
    and, for the EMA update, its statistics in ``state.extra``."""
    cfg = s.cfg
    net_key, pick_key = jax.random.split(key)
    x = jnp.asarray(example_batch["x"], jnp.float32)
    placeholder = jnp.zeros((cfg.num_codes, cfg.code_dim), jnp.float32)
    net_params = s.net.init(net_key, x, placeholder)
    z_e = s.net.apply(net_params, x, method=lambda m, x: m.encoder(x)).reshape(-1, cfg.code_dim)
    codebook = z_e[jax.random.randint(pick_key, (cfg.num_codes,), 0, z_e.shape[0])]
    stats = ema_codebook_init(codebook)
    extra = {"cluster_size": stats.cluster_size, "embed_sum": stats.embed_sum} if s.ema_codebook else {}
    return TrainState.create(key, {"net": net_params, "codebook": codebook}, s.tx, use_ema=s.ema_decay > 0,
                             extra=extra)


def losses(s: Setup, params: Any, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``‖x − D(z_q)‖² + β ‖z_e − sg[e]‖² (+ ‖sg[z_e] − e‖²)`` (van den Oord et al. 2017, eq. 3) and its
    parts; the codebook term only with the gradient update (the EMA update moves the codebook itself)."""
    codebook = params["codebook"]
    if s.ema_codebook:  # moved by the EMA update, not by gradients
        codebook = jax.lax.stop_gradient(codebook)
    x_hat, z_e, e_k, k = s.net.apply(params["net"], x, codebook)
    recon = jnp.mean((x_hat - x) ** 2)
    codebook_loss, commitment = vq_losses(z_e, e_k, s.cfg.beta)
    loss = recon + commitment + (0.0 if s.ema_codebook else codebook_loss)
    return loss, {"recon": recon, "commitment": commitment, "codebook_loss": codebook_loss, "z_e": z_e, "k": k}


def usage_metrics(s: Setup, k: jax.Array) -> dict[str, jax.Array]:
    """Codebook perplexity and the fraction of the K codes used in the batch."""
    return {"perplexity": codebook_perplexity(k, s.cfg.num_codes),
            "codes_used": jnp.mean(code_usage(k, s.cfg.num_codes) > 0)}


def update_ema_codebook(s: Setup, state: TrainState, z_e: jax.Array, k: jax.Array) -> TrainState:
    """The EMA codebook step (van den Oord et al. 2017, appendix A.1): new statistics in ``state.extra`` and
    ``e = m / Ñ`` written into the parameters (and into the averaged parameters, which keep it current)."""
    stats = ema_codebook_update(EmaCodebookState(state.extra["cluster_size"], state.extra["embed_sum"],
                                                 state.params["codebook"]),
                                z_e, k, s.cfg.codebook_decay, s.cfg.codebook_epsilon)
    ema = state.ema_params
    if ema is not None:
        ema = {**ema, "codebook": stats.codebook}
    return state.replace(params={**state.params, "codebook": stats.codebook}, ema_params=ema,
                         extra={"cluster_size": stats.cluster_size, "embed_sum": stats.embed_sum})


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One gradient step on :func:`losses`, then the EMA codebook update when configured."""
    del key
    (loss, aux), grads = jax.value_and_grad(partial(losses, s), has_aux=True)(state.params, batch["x"])
    state = apply_gradients(state, s.tx, grads, s.ema_decay)
    if s.ema_codebook:
        state = update_ema_codebook(s, state, aux["z_e"], aux["k"])
    metrics = {"loss": loss, "recon": aux["recon"], "commitment": aux["commitment"],
               "codebook_loss": aux["codebook_loss"], **usage_metrics(s, aux["k"])}
    return state, metrics


def evaluate(s: Setup, params: Any, batch: Batch, key: jax.Array) -> Metrics:
    """Reconstruction mean squared error, VQ losses and codebook usage on ``batch``."""
    del key
    loss, aux = losses(s, params, batch["x"])
    return {"loss": loss, "recon": aux["recon"], "commitment": aux["commitment"], **usage_metrics(s, aux["k"])}


def make_family(config: Any, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()) -> Family:
    """VQ-VAE family: metrics ``loss``, ``recon`` (mean squared error), ``commitment``, ``codebook_loss``,
    ``perplexity`` and ``codes_used`` (fraction of the K codes used in the batch). With
    ``config.model.prior_of`` set, stage 2 (:func:`gm_jax.vq.prior_family.make_prior_family`) on the
    stage-1 run in ``inputs.upstream["model.prior_of"]``."""
    cfg = config.model
    if cfg.get("prior_of", ""):
        return make_prior_family(config, spec, inputs)
    check_config(cfg, spec)
    s = Setup(cfg, VQVAE(tuple(cfg.channels), cfg.code_dim, spec.shape[-1]), make_optimizer(config.optim),
              float(config.optim.get("ema_decay", 0.0)))
    return Family(name="vqvae", init=partial(init_state, s), train_step=partial(train_step, s), sample=None,
                  evaluate=partial(evaluate, s))
