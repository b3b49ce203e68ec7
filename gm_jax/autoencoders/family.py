"""The autoencoder / VAE family behind the common step protocol (gm_jax.core.family).

``config.model`` fields are listed in :func:`model_defaults`; ``config.optim`` goes to
``gm_jax.core.make_optimizer`` (EMA of the parameters when ``config.optim.ema_decay > 0``).

Data and decoders. The Bernoulli decoder is only defined for binary data (``spec.binary`` and values in
{0, 1}); grey-level data in [0, 1] is rejected with a ConfigError instead of being treated as Bernoulli
'probabilities' (which is not a normalized likelihood; the continuous Bernoulli is not implemented) — use
the Gaussian decoder or a binarized dataset. The Gaussian decoder works on data in ``spec.value_range``;
on quantized data (``spec.levels > 0``) with ``model.dequantize`` each level is replaced by a uniform draw
from the bin of width ``Δ = (hi − lo)/levels`` it owns (``gm_jax.core.uniform_dequantize``), and bits/dim
include the ``D log(1/Δ)`` correction of
``gm_jax.metrics.likelihood.continuous_nll_to_bits_per_dim`` (Theis et al. 2016).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gm_jax.autoencoders import losses
from gm_jax.autoencoders.model import ARCHS, DECODERS, VAE, VARIANCES, Autoencoder
from gm_jax.autoencoders.sample import sample_prior_latents
from gm_jax.core import Batch, DataSpec, Family, Metrics, PyTree, TrainState, apply_gradients
from gm_jax.core.dequantize import uniform_dequantize
from gm_jax.core.errors import check_choice, require
from gm_jax.core.family import FamilyInputs
from gm_jax.core.optim import make_optimizer
from gm_jax.core.options import Option
from gm_jax.metrics.likelihood import continuous_nll_to_bits_per_dim, nats_to_bits_per_dim
from gm_jax.nn.precision import compute_dtype

FAMILIES = ("vae", "autoencoder")
KINDS = ("vanilla", "denoising", "sparse")
CORRUPTIONS = ("gaussian", "masking")
SPARSITY_PENALTIES = ("l1", "kl")

TEMPERATURE = Option("temperature", "float", "VAE: scale τ of the prior draw z ~ N(0, τ² I)", 1.0, low=0.0,
                     low_open=True)
DECODER_MEAN = Option("decoder_mean", "int", "VAE: return the decoder mean E[x|z] (1) or a draw x ~ p(x|z) (0)",
                      1, low=0, high=1)
SAMPLE_OPTIONS: tuple[Option, ...] = (TEMPERATURE, DECODER_MEAN)


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model`` for this family, with their defaults."""
    c = ml_collections.ConfigDict()
    c.family = "vae"                 # 'vae' | 'autoencoder'
    c.kind = "vanilla"               # autoencoder only: 'vanilla' | 'denoising' | 'sparse'
    c.arch = "mlp"                   # 'mlp' | 'conv'
    c.latent_dim = 16
    c.hidden = (256, 128)            # MLP hidden widths (encoder order; the decoder mirrors them)
    c.channels = (16, 32)            # conv channels per stride-2 level (encoder order)
    c.decoder = "bernoulli"          # 'bernoulli' (binary data only) | 'gaussian'
    c.gaussian_variance = "learned"  # 'learned' (per-dimension, shared over examples) | 'fixed'
    c.fixed_logvar = -2.0            # log σ² of the fixed-variance Gaussian decoder
    c.min_logvar = -9.0              # soft floor of the learned log σ²
    c.beta = 1.0                     # weight of the KL term in the training loss (β-VAE; 1 = the ELBO)
    c.dequantize = True              # Gaussian decoder on quantized data: add uniform noise of one bin
    c.corruption = "gaussian"        # denoising AE: 'gaussian' | 'masking'
    c.noise_std = 0.3                # std of the Gaussian corruption
    c.mask_prob = 0.25               # probability that masking sets an entry to the range's low end
    c.sparsity_penalty = "l1"        # sparse AE: 'l1' (λ Σ|h|) | 'kl' (λ Σ KL(ρ‖ρ̂), sigmoid codes)
    c.sparsity_weight = 1e-3         # λ
    c.sparsity_target = 0.05         # ρ of the KL penalty
    c.eval_iwae_k = 64               # importance samples of evaluate's nll_iwae
    c.iwae_chunk = 64                # samples per chunk (memory bound) for nll_iwae
    c.dtype = "float32"              # conv encoder/decoder computation dtype: 'float32' | 'bfloat16'
    return c


def _validate(m: ml_collections.ConfigDict, spec: DataSpec) -> None:
    check_choice("model.family", m.family, FAMILIES)
    check_choice("model.arch", m.arch, ARCHS)
    check_choice("model.decoder", m.decoder, DECODERS)
    require(int(m.latent_dim) >= 1, f"model.latent_dim must be >= 1, got {m.latent_dim}")
    if m.arch == "conv":
        require(spec.is_image, f"model.arch='conv' needs image data [H, W, C], got shape {spec.shape}; "
                "use model.arch='mlp'")
        require(len(m.channels) >= 1, "model.channels must list at least one conv level, e.g. (16, 32)")
    if m.decoder == "bernoulli":
        require(spec.binary and tuple(spec.value_range) == (0.0, 1.0),
                f"model.decoder='bernoulli' needs binary data in {{0, 1}} but dataset {spec.name!r} is not "
                "binary; use model.decoder='gaussian' or a binarized dataset")
    if m.family == "autoencoder":
        check_choice("model.kind", m.kind, KINDS)
        if m.kind == "denoising":
            check_choice("model.corruption", m.corruption, CORRUPTIONS)
            require(m.noise_std >= 0, f"model.noise_std must be >= 0, got {m.noise_std}")
            require(0 <= m.mask_prob < 1, f"model.mask_prob must be in [0, 1), got {m.mask_prob}")
        if m.kind == "sparse":
            check_choice("model.sparsity_penalty", m.sparsity_penalty, SPARSITY_PENALTIES)
            require(m.sparsity_weight >= 0, f"model.sparsity_weight must be >= 0, got {m.sparsity_weight}")
            require(0 < m.sparsity_target < 1, f"model.sparsity_target must be in (0, 1), got "
                    f"{m.sparsity_target}")
    else:
        check_choice("model.gaussian_variance", m.gaussian_variance, VARIANCES)
        require(m.beta >= 0, f"model.beta must be >= 0, got {m.beta}")
        k, chunk = int(m.eval_iwae_k), int(m.iwae_chunk)
        require(k >= 1 and chunk >= 1, f"model.eval_iwae_k and model.iwae_chunk must be >= 1, got {k}, {chunk}")
        require(k % min(chunk, k) == 0, f"model.eval_iwae_k={k} must be a multiple of model.iwae_chunk={chunk}")


def build_model(m: ml_collections.ConfigDict, spec: DataSpec) -> VAE | Autoencoder:
    """The linen module described by ``config.model`` for data of shape ``spec.shape``."""
    common = dict(data_shape=tuple(spec.shape), latent_dim=int(m.latent_dim), arch=m.arch,
                  hidden=tuple(m.hidden), channels=tuple(m.channels), decoder_dist=m.decoder,
                  dtype=compute_dtype(m))
    if m.family == "vae":
        return VAE(gaussian_variance=m.gaussian_variance, fixed_logvar=float(m.fixed_logvar),
                   min_logvar=float(m.min_logvar), **common)
    sigmoid_codes = m.kind == "sparse" and m.sparsity_penalty == "kl"
    return Autoencoder(code_activation="sigmoid" if sigmoid_codes else "none", **common)


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces of one autoencoder/VAE family, shared by its pure functions."""

    m: ml_collections.ConfigDict
    spec: DataSpec
    model: VAE | Autoencoder
    tx: Any
    ema_decay: float


def init_state(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    """Parameters of ``s.model`` on the example batch, the optimizer state, and the EMA copy if asked."""
    params = s.model.init(key, jnp.asarray(example_batch["x"], jnp.float32))["params"]
    return TrainState.create(key, params, s.tx, use_ema=s.ema_decay > 0)


def prepare(s: Setup, key: jax.Array, x: jax.Array) -> jax.Array:
    """``x`` as float32; with the Gaussian decoder on quantized data and ``model.dequantize``, uniformly
    dequantized into the bin each level owns (``gm_jax.core.uniform_dequantize``, Theis et al. 2016)."""
    x = jnp.asarray(x, jnp.float32)
    if s.m.decoder == "gaussian" and s.spec.levels > 0 and bool(s.m.dequantize):
        x = uniform_dequantize(key, x, s.spec.value_range, s.spec.levels)
    return x


def encode_fn(s: Setup, params: PyTree) -> losses.EncodeFn:
    """``x -> (μ, log σ²)`` of ``q(z|x)``."""
    return lambda x: s.model.apply({"params": params}, x, method=VAE.encode)


def log_likelihood_fn(s: Setup, params: PyTree) -> losses.LogLikelihoodFn:
    """``(x, z) -> log p(x|z)`` per example."""
    return lambda x, z: s.model.apply({"params": params}, x, z, method=VAE.log_likelihood)


def vae_loss(s: Setup, key: jax.Array, x: jax.Array, params: PyTree) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``mean(β KL − log p(x|z))``: the negative ELBO for β = 1 (Kingma & Welling 2014, eq. 10; β-VAE,
    Higgins et al. 2017), and the metrics ``loss``, ``elbo``, ``kl``, ``recon``."""
    bound, recon_ll, kl = losses.elbo(key, x, encode_fn(s, params), log_likelihood_fn(s, params))
    loss = jnp.mean(float(s.m.beta) * kl - recon_ll)
    return loss, {"loss": loss, "elbo": jnp.mean(bound), "kl": jnp.mean(kl), "recon": -jnp.mean(recon_ll)}


def vae_train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One gradient step on :func:`vae_loss`."""
    key_dq, key_z = jax.random.split(key)
    x = prepare(s, key_dq, batch["x"])
    grads, metrics = jax.grad(partial(vae_loss, s, key_z, x), has_aux=True)(state.params)
    return apply_gradients(state, s.tx, grads, s.ema_decay), metrics


def vae_evaluate(s: Setup, params: PyTree, batch: Batch, key: jax.Array) -> Metrics:
    """Per-example means over the batch: ``elbo`` (k-sample estimate, the mean of the same k log weights
    as the IWAE bound, so ``nll_iwae ≤ −elbo`` always), ``kl`` (analytic), ``recon = −elbo − kl``,
    ``nll_iwae`` (k = model.eval_iwae_k, nats; Burda et al. 2016, eq. 8) and ``bits_per_dim`` of ``nll_iwae``
    (with the ``D log(1/Δ)`` dequantization correction on quantized data)."""
    key_dq, key_iw = jax.random.split(key)
    x = prepare(s, key_dq, batch["x"])
    encode, log_likelihood = encode_fn(s, params), log_likelihood_fn(s, params)

    def log_weights(key: jax.Array, x: jax.Array, n: int) -> jax.Array:
        return losses.importance_log_weights(key, x, encode, log_likelihood, n)

    bound_k, bound = losses.iwae_estimates(log_weights, key_iw, x, int(s.m.eval_iwae_k), int(s.m.iwae_chunk))
    nll = -bound_k
    kl = losses.gaussian_kl_standard_normal(*encode(x))
    num_dims = math.prod(s.spec.shape)
    if s.m.decoder == "gaussian" and s.spec.levels > 0:
        bpd = continuous_nll_to_bits_per_dim(nll, num_dims, tuple(s.spec.value_range), s.spec.levels)
    else:
        bpd = nats_to_bits_per_dim(nll, num_dims)
    return {"elbo": jnp.mean(bound), "kl": jnp.mean(kl), "recon": -jnp.mean(bound + kl),
            "nll_iwae": jnp.mean(nll), "bits_per_dim": jnp.mean(bpd)}


def vae_draw(s: Setup, params: PyTree, key: jax.Array, temperature: jax.Array, num: int,
             decoder_mean: bool) -> jax.Array:
    """``E[x|z]`` (or ``x ~ p(x|z)``) with ``z ~ N(0, τ² I)``, clipped to ``spec.value_range``."""
    key_z, key_x = jax.random.split(key)
    z = sample_prior_latents(key_z, num, int(s.m.latent_dim), temperature)
    if decoder_mean:
        x = s.model.apply({"params": params}, z, method=VAE.decoder_mean)
    else:
        x = s.model.apply({"params": params}, key_x, z, method=VAE.decoder_sample)
    return jnp.clip(x, *s.spec.value_range)


def vae_sample(s: Setup, draw: Callable, params: PyTree, key: jax.Array, num: int,
               temperature: float | None = None, decoder_mean: int | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` images ``E[x|z]`` (or draws from ``p(x|z)`` with ``decoder_mean=0``), ``z ~ N(0, τ² I)``,
    clipped to ``spec.value_range``; ``info = {"nfe": 1}`` (one decoder pass). ``draw``: :func:`vae_draw`
    jitted with ``num`` and ``decoder_mean`` static."""
    t = TEMPERATURE.check(TEMPERATURE.default if temperature is None else temperature)
    mean = DECODER_MEAN.check(DECODER_MEAN.default if decoder_mean is None else decoder_mean)
    return draw(params, key, jnp.asarray(t, jnp.float32), num, bool(mean)), {"nfe": 1}


def make_family(config: ml_collections.ConfigDict, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()
                ) -> Family:
    """Autoencoder or VAE family from ``config.model`` (see :func:`model_defaults`) and ``config.optim``."""
    del inputs  # no evaluation images or upstream runs are needed
    m = config.model
    _validate(m, spec)
    s = Setup(m, spec, build_model(m, spec), make_optimizer(config.optim),
              float(config.optim.get("ema_decay", 0.0)))
    init = partial(init_state, s)
    if m.family == "autoencoder":
        train_step, evaluate = _autoencoder_fns(m, s.model, s.tx, s.ema_decay, len(spec.shape),
                                                float(spec.value_range[0]))
        return Family(name="autoencoder", init=init, train_step=train_step, sample=None, evaluate=evaluate)
    draw = jax.jit(partial(vae_draw, s), static_argnames=("num", "decoder_mean"))
    return Family(name="vae", init=init, train_step=partial(vae_train_step, s), sample=partial(vae_sample, s, draw),
                  evaluate=jax.jit(partial(vae_evaluate, s)), sample_options=SAMPLE_OPTIONS)


def _autoencoder_fns(m: ml_collections.ConfigDict, model: Autoencoder, tx: Any, ema_decay: float,
                     event_ndim: int, low: float) -> tuple[Callable, Callable]:
    """train_step and evaluate of the deterministic autoencoders. Reconstruction loss per example:
    ``−log Bern(x; σ(g(h)))`` (Bernoulli decoder) or ``Σ (x − g(h))²`` (Gaussian decoder, the NLL of a
    fixed-variance Gaussian up to scale and constant). Denoising (Vincent et al. 2008): the code is computed
    from a corrupted ``x̃`` and the clean ``x`` is reconstructed. Sparse: ``+ λ·mean Σ|h|`` or
    ``+ λ Σ_j KL(ρ ‖ ρ̂_j)``."""
    bernoulli = m.decoder == "bernoulli"
    kind = m.kind

    def recon_loss(out: jax.Array, x: jax.Array) -> jax.Array:
        if bernoulli:
            return -losses.bernoulli_log_likelihood(out, x, event_ndim)
        return jnp.sum(jnp.square(x - out), axis=tuple(range(1, x.ndim)))

    def corrupt(key: jax.Array, x: jax.Array) -> jax.Array:
        if kind != "denoising":
            return x
        if m.corruption == "gaussian":
            return losses.gaussian_corruption(key, x, float(m.noise_std))
        return losses.masking_corruption(key, x, float(m.mask_prob), low)

    def penalty(h: jax.Array) -> jax.Array:
        if kind != "sparse":
            return jnp.zeros(())
        if m.sparsity_penalty == "l1":
            return float(m.sparsity_weight) * jnp.mean(losses.l1_activity_penalty(h))
        return float(m.sparsity_weight) * losses.kl_sparsity_penalty(h, float(m.sparsity_target))

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        x = jnp.asarray(batch["x"], jnp.float32)
        x_in = corrupt(key, x)

        def loss_fn(params: PyTree) -> tuple[jax.Array, dict[str, jax.Array]]:
            out, h = model.apply({"params": params}, x_in)
            recon = jnp.mean(recon_loss(out, x))
            pen = penalty(h)
            return recon + pen, {"loss": recon + pen, "recon": recon, "sparsity_penalty": pen}

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
        return apply_gradients(state, tx, grads, ema_decay), metrics

    @jax.jit
    def evaluate(params: PyTree, batch: Batch, key: jax.Array) -> Metrics:
        del key  # evaluation reconstructs clean inputs deterministically
        x = jnp.asarray(batch["x"], jnp.float32)
        out, h = model.apply({"params": params}, x)
        mean = jax.nn.sigmoid(out) if bernoulli else out
        return {"recon": jnp.mean(recon_loss(out, x)), "mse": jnp.mean(jnp.square(x - mean)),
                "code_abs_mean": jnp.mean(jnp.abs(h))}

    return train_step, evaluate


__all__ = ["SAMPLE_OPTIONS", "Setup", "build_model", "make_family", "model_defaults", "vae_evaluate", "vae_sample",
           "vae_train_step"]
