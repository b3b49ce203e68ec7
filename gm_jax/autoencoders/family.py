"""The autoencoder / VAE family behind the common step protocol (gm_jax.core.family).

``config.model`` fields are listed in :func:`model_defaults`; ``config.optim`` goes to
``gm_jax.core.make_optimizer`` (EMA of the parameters when ``config.optim.ema_decay > 0``).

Data and decoders. The Bernoulli decoder is only defined for binary data (``spec.binary`` and values in
{0, 1}); grey-level data in [0, 1] is rejected with a ConfigError instead of being treated as Bernoulli
'probabilities' (which is not a normalized likelihood; the continuous Bernoulli is not implemented) — use
the Gaussian decoder or a binarized dataset. The Gaussian decoder works on data in ``spec.value_range``;
on quantized data (``spec.levels > 0``) with ``model.dequantize`` the inputs get uniform noise of one bin
width ``Δ = (hi − lo)/levels`` (centred on the value), and bits/dim include the ``D log(1/Δ)`` correction of
``gm_jax.metrics.likelihood.continuous_nll_to_bits_per_dim`` (Theis et al. 2016).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.scipy.special import logsumexp

from gm_jax.autoencoders import losses
from gm_jax.autoencoders.model import ARCHS, DECODERS, VAE, VARIANCES, Autoencoder
from gm_jax.autoencoders.sample import sample_prior_latents
from gm_jax.core import Batch, DataSpec, Family, Metrics, PyTree, TrainState, apply_gradients
from gm_jax.core.errors import check_choice, require
from gm_jax.core.optim import make_optimizer
from gm_jax.metrics.likelihood import continuous_nll_to_bits_per_dim, nats_to_bits_per_dim
from gm_jax.nn.precision import compute_dtype

FAMILIES = ("vae", "autoencoder")
KINDS = ("vanilla", "denoising", "sparse")
CORRUPTIONS = ("gaussian", "masking")
SPARSITY_PENALTIES = ("l1", "kl")

LogWeightsFn = Callable[[PyTree, jax.Array, jax.Array, int], jax.Array]


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


def iwae_nll(apply: LogWeightsFn, params: PyTree, x: jax.Array, key: jax.Array, k: int,
             chunk: int) -> jax.Array:
    """Per-example importance-sampled NLL ``−(logsumexp_i log w_i − log k)`` (Burda et al. 2016, eq. 8)
    over ``k`` samples drawn ``chunk`` at a time inside one ``lax.scan``, so memory is that of ``chunk``
    samples (k ≥ 1000 works). ``apply(params, x, key, n) -> log weights [n, B]``; chunk ``j`` uses the key
    ``fold_in(key, j)``; the log-sum-exp is accumulated with ``logaddexp``."""
    log_sum_exp, _ = log_weight_statistics(apply, params, x, key, k, chunk)
    return -(log_sum_exp - math.log(k))


def log_weight_statistics(apply: LogWeightsFn, params: PyTree, x: jax.Array, key: jax.Array, k: int,
                          chunk: int) -> tuple[jax.Array, jax.Array]:
    """``(logsumexp_i log w_i, Σ_i log w_i)`` per example over ``k`` log weights computed ``chunk`` at a time
    (see :func:`iwae_nll`). ``−(first − log k)`` is the IWAE NLL, ``second / k`` the k-sample ELBO estimate;
    by Jensen's inequality ``first − log k ≥ second / k`` for every draw."""
    require(k >= 1 and chunk >= 1, f"k and chunk must be >= 1, got k={k}, chunk={chunk}")
    chunk = min(chunk, k)
    require(k % chunk == 0, f"k={k} must be a multiple of chunk={chunk}; change the number of samples or chunk")

    def body(carry: tuple[jax.Array, jax.Array], j: jax.Array) -> tuple[tuple[jax.Array, jax.Array], None]:
        log_w = apply(params, x, jax.random.fold_in(key, j), chunk)
        total, linear_sum = carry
        return (jnp.logaddexp(total, logsumexp(log_w, axis=0)), linear_sum + jnp.sum(log_w, axis=0)), None

    init = (jnp.full((x.shape[0],), -jnp.inf, jnp.float32), jnp.zeros((x.shape[0],), jnp.float32))
    (total, linear_sum), _ = jax.lax.scan(body, init, jnp.arange(k // chunk))
    return total, linear_sum


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


def make_family(config: ml_collections.ConfigDict, spec: DataSpec) -> Family:
    """Autoencoder or VAE family from ``config.model`` (see :func:`model_defaults`) and ``config.optim``."""
    m = config.model
    _validate(m, spec)
    model = build_model(m, spec)
    tx = make_optimizer(config.optim)
    ema_decay = float(config.optim.get("ema_decay", 0.0))
    event_ndim = len(spec.shape)
    num_dims = math.prod(spec.shape)
    lo, hi = (float(v) for v in spec.value_range)

    def init(key: jax.Array, example_batch: Batch) -> TrainState:
        params = model.init(key, jnp.asarray(example_batch["x"], jnp.float32))["params"]
        return TrainState.create(key, params, tx, use_ema=ema_decay > 0)

    if m.family == "autoencoder":
        train_step, evaluate = _autoencoder_fns(m, model, tx, ema_decay, event_ndim, lo)
        return Family(name="autoencoder", init=init, train_step=train_step, sample=None, evaluate=evaluate)

    gaussian = m.decoder == "gaussian"
    dequantize = gaussian and spec.levels > 0 and bool(m.dequantize)
    bin_width = (hi - lo) / spec.levels if spec.levels > 0 else 0.0
    beta = float(m.beta)
    k, chunk = int(m.eval_iwae_k), int(m.iwae_chunk)

    def prepare(key: jax.Array, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, jnp.float32)
        if dequantize:
            x = x + bin_width * (jax.random.uniform(key, x.shape) - 0.5)
        return x

    def encode_fn(params: PyTree) -> losses.EncodeFn:
        return lambda x: model.apply({"params": params}, x, method=VAE.encode)

    def log_likelihood_fn(params: PyTree) -> losses.LogLikelihoodFn:
        return lambda x, z: model.apply({"params": params}, x, z, method=VAE.log_likelihood)

    def log_weights(params: PyTree, x: jax.Array, key: jax.Array, n: int) -> jax.Array:
        return losses.importance_log_weights(key, x, encode_fn(params), log_likelihood_fn(params), n)

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        key_dq, key_z = jax.random.split(key)
        x = prepare(key_dq, batch["x"])

        def loss_fn(params: PyTree) -> tuple[jax.Array, dict[str, jax.Array]]:
            bound, recon_ll, kl = losses.elbo(key_z, x, encode_fn(params), log_likelihood_fn(params))
            loss = jnp.mean(beta * kl - recon_ll)
            return loss, {"loss": loss, "elbo": jnp.mean(bound), "kl": jnp.mean(kl), "recon": -jnp.mean(recon_ll)}

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
        return apply_gradients(state, tx, grads, ema_decay), metrics

    @jax.jit
    def evaluate(params: PyTree, batch: Batch, key: jax.Array) -> Metrics:
        """Per-example means over the batch: ``elbo`` (k-sample estimate, the mean of the same k log weights
        as the IWAE bound, so ``nll_iwae ≤ −elbo`` always), ``kl`` (analytic), ``recon = −elbo − kl``,
        ``nll_iwae`` (k = model.eval_iwae_k, nats) and ``bits_per_dim`` of ``nll_iwae``."""
        key_dq, key_iw = jax.random.split(key)
        x = prepare(key_dq, batch["x"])
        log_sum_exp, sum_log_w = log_weight_statistics(log_weights, params, x, key_iw, k, chunk)
        nll = -(log_sum_exp - math.log(k))
        bound = sum_log_w / k
        kl = losses.gaussian_kl_standard_normal(*encode_fn(params)(x))
        if gaussian and spec.levels > 0:
            bpd = continuous_nll_to_bits_per_dim(nll, num_dims, (lo, hi), spec.levels)
        else:
            bpd = nats_to_bits_per_dim(nll, num_dims)
        return {"elbo": jnp.mean(bound), "kl": jnp.mean(kl), "recon": -jnp.mean(bound + kl),
                "nll_iwae": jnp.mean(nll), "bits_per_dim": jnp.mean(bpd)}

    def sample(params: PyTree, key: jax.Array, num: int, temperature: float | jax.Array = 1.0,
               decoder_mean: bool = True) -> tuple[jax.Array, dict[str, Any]]:
        """``num`` images ``E[x|z]`` (or ``x ~ p(x|z)`` with ``decoder_mean=False``), ``z ~ N(0, τ² I)``,
        clipped to ``spec.value_range``; ``info = {"nfe": 1}`` (one decoder pass)."""
        return _sample(params, key, jnp.asarray(temperature, jnp.float32), num, decoder_mean), {"nfe": 1}

    @jax.jit(static_argnames=("num", "decoder_mean"))
    def _sample(params: PyTree, key: jax.Array, temperature: jax.Array, num: int,
                decoder_mean: bool) -> jax.Array:
        key_z, key_x = jax.random.split(key)
        z = sample_prior_latents(key_z, num, int(m.latent_dim), temperature)
        if decoder_mean:
            x = model.apply({"params": params}, z, method=VAE.decoder_mean)
        else:
            x = model.apply({"params": params}, key_x, z, method=VAE.decoder_sample)
        return jnp.clip(x, lo, hi)

    return Family(name="vae", init=init, train_step=train_step, sample=sample, evaluate=evaluate)


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


__all__ = ["build_model", "iwae_nll", "log_weight_statistics", "make_family", "model_defaults"]
