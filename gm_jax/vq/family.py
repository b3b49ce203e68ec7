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
from gm_jax.vq.model import VQVAE
from gm_jax.vq.quantizer import (
    EmaCodebookState,
    code_usage,
    codebook_perplexity,
    ema_codebook_init,
    ema_codebook_update,
    vq_losses,
)


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


def make_family(config: Any, spec: DataSpec) -> Family:
    """VQ-VAE family: metrics ``loss``, ``recon`` (mean squared error), ``commitment``, ``codebook_loss``,
    ``perplexity`` and ``codes_used`` (fraction of the K codes used in the batch)."""
    cfg = config.model
    if cfg.get("prior_of", ""):
        from gm_jax.vq.prior_family import make_prior_family  # stage 2 loads stage 1 through this module

        return make_prior_family(config, spec)
    require(spec.is_image, f"the VQ-VAE models images [H, W, C], got example shape {spec.shape}")
    check_choice("model.codebook_update", cfg.codebook_update, ("ema", "gradient"))
    factor = 2 ** len(cfg.channels)
    require(spec.shape[0] % factor == 0 and spec.shape[1] % factor == 0,
            f"image size {spec.shape[:2]} must be divisible by 2^len(model.channels) = {factor}; "
            "use fewer model.channels")
    require(cfg.num_codes >= 2, f"model.num_codes must be >= 2, got {cfg.num_codes}")
    net = VQVAE(tuple(cfg.channels), cfg.code_dim, spec.shape[-1])
    tx = make_optimizer(config.optim)
    ema_decay = float(config.optim.get("ema_decay", 0.0))
    use_ema_codebook = cfg.codebook_update == "ema"

    def init(key: jax.Array, example_batch: Batch) -> TrainState:
        net_key, pick_key = jax.random.split(key)
        x = jnp.asarray(example_batch["x"], jnp.float32)
        placeholder = jnp.zeros((cfg.num_codes, cfg.code_dim), jnp.float32)
        net_params = net.init(net_key, x, placeholder)
        # codebook: K encoder outputs of the example batch, drawn with replacement
        z_e = net.apply(net_params, x, method=lambda m, x: m.encoder(x)).reshape(-1, cfg.code_dim)
        codebook = z_e[jax.random.randint(pick_key, (cfg.num_codes,), 0, z_e.shape[0])]
        stats = ema_codebook_init(codebook)
        extra = {"cluster_size": stats.cluster_size, "embed_sum": stats.embed_sum} if use_ema_codebook else {}
        return TrainState.create(key, {"net": net_params, "codebook": codebook}, tx, use_ema=ema_decay > 0,
                                 extra=extra)

    def losses(params: Any, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        codebook = params["codebook"]
        if use_ema_codebook:  # moved by the EMA update, not by gradients
            codebook = jax.lax.stop_gradient(codebook)
        x_hat, z_e, e_k, k = net.apply(params["net"], x, codebook)
        recon = jnp.mean((x_hat - x) ** 2)
        codebook_loss, commitment = vq_losses(z_e, e_k, cfg.beta)
        loss = recon + commitment + (0.0 if use_ema_codebook else codebook_loss)
        return loss, {"recon": recon, "commitment": commitment, "codebook_loss": codebook_loss, "z_e": z_e,
                      "k": k}

    def usage_metrics(k: jax.Array) -> dict[str, jax.Array]:
        return {"perplexity": codebook_perplexity(k, cfg.num_codes),
                "codes_used": jnp.mean(code_usage(k, cfg.num_codes) > 0)}

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        del key
        (loss, aux), grads = jax.value_and_grad(losses, has_aux=True)(state.params, batch["x"])
        state = apply_gradients(state, tx, grads, ema_decay)
        if use_ema_codebook:
            stats = ema_codebook_update(EmaCodebookState(state.extra["cluster_size"], state.extra["embed_sum"],
                                                         state.params["codebook"]),
                                        aux["z_e"], aux["k"], cfg.codebook_decay, cfg.codebook_epsilon)
            params = {**state.params, "codebook": stats.codebook}
            ema = state.ema_params
            if ema is not None:  # the averaged weights keep the current EMA codebook
                ema = {**ema, "codebook": stats.codebook}
            state = state.replace(params=params, ema_params=ema,
                                  extra={"cluster_size": stats.cluster_size, "embed_sum": stats.embed_sum})
        metrics = {"loss": loss, "recon": aux["recon"], "commitment": aux["commitment"],
                   "codebook_loss": aux["codebook_loss"], **usage_metrics(aux["k"])}
        return state, metrics

    def evaluate(params: Any, batch: Batch, key: jax.Array) -> Metrics:
        """Reconstruction mean squared error, VQ losses and codebook usage on ``batch``."""
        del key
        loss, aux = losses(params, batch["x"])
        return {"loss": loss, "recon": aux["recon"], "commitment": aux["commitment"], **usage_metrics(aux["k"])}

    return Family(name="vqvae", init=init, train_step=train_step, sample=None, evaluate=evaluate)
