"""Pure losses of autoencoders and VAEs: closed-form log-likelihoods and KL, the reparameterization,
the ELBO and importance-weighted bounds, sparsity penalties and input corruptions.

Log-likelihoods sum over the last ``event_ndim`` axes (the data dimensions); leading axes (batch, samples)
are kept. Latent codes are vectors ``[..., d]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from gm_jax.core.errors import require

EncodeFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
LogLikelihoodFn = Callable[[jax.Array, jax.Array], jax.Array]
LogWeightsFn = Callable[[jax.Array, jax.Array, int], jax.Array]

_LOG_2PI = math.log(2.0 * math.pi)


def _sum_last(x: jax.Array, event_ndim: int) -> jax.Array:
    return jnp.sum(x, axis=tuple(range(x.ndim - event_ndim, x.ndim))) if event_ndim > 0 else x


def gaussian_kl_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """``KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (σ_j² + μ_j² − 1 − log σ_j²)`` over the last axis
    (Kingma & Welling 2014, appendix B)."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def gaussian_log_likelihood(x: jax.Array, mean: jax.Array, logvar: jax.Array,
                            event_ndim: int = 1) -> jax.Array:
    """``log N(x; μ, diag σ²) = −½ Σ (log 2π + log σ² + (x − μ)² / σ²)`` over the last ``event_ndim``
    axes (``logvar`` broadcasts)."""
    logvar = jnp.broadcast_to(logvar, jnp.broadcast_shapes(jnp.shape(logvar), jnp.shape(x), jnp.shape(mean)))
    terms = -0.5 * (_LOG_2PI + logvar + jnp.square(x - mean) * jnp.exp(-logvar))
    return _sum_last(terms, event_ndim)


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
    """``log N(z; 0, I) = −½ Σ_j (log 2π + z_j²)`` over the last axis (the VAE prior)."""
    return -0.5 * jnp.sum(_LOG_2PI + jnp.square(z), axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array, event_ndim: int = 1) -> jax.Array:
    """``log Bern(x; σ(ℓ)) = Σ [x log σ(ℓ) + (1 − x) log σ(−ℓ)] = Σ [x ℓ − softplus(ℓ)]`` over the last
    ``event_ndim`` axes, for ``x`` in {0, 1} (stable in the logits ℓ)."""
    return _sum_last(x * logits - jax.nn.softplus(logits), event_ndim)


def reparameterize(key: jax.Array, mean: jax.Array, logvar: jax.Array,
                   num_samples: int | None = None) -> jax.Array:
    """``z = μ + exp(½ log σ²) ⊙ ε``, ``ε ~ N(0, I)`` (Kingma & Welling 2014, eq. 4): a sample of
    ``q(z|x)`` that is differentiable in ``(μ, log σ²)``. With ``num_samples = k`` the result has a leading
    axis of ``k`` independent samples."""
    shape = mean.shape if num_samples is None else (num_samples,) + mean.shape
    eps = jax.random.normal(key, shape, mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


def elbo(key: jax.Array, x: jax.Array, encode: EncodeFn,
         log_likelihood: LogLikelihoodFn) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-example ELBO with one reparameterized sample and the analytic KL (Kingma & Welling 2014,
    eq. 10): ``L = log p(x | z) − KL(q(z|x) ‖ N(0, I))``, ``z = μ + σ ε``.

    ``encode(x) -> (μ, log σ²)``; ``log_likelihood(x, z) -> log p(x|z)`` per example. Returns
    ``(elbo, log p(x|z), kl)``, each of shape ``[B]``.
    """
    mean, logvar = encode(x)
    z = reparameterize(key, mean, logvar)
    recon = log_likelihood(x, z)
    kl = gaussian_kl_standard_normal(mean, logvar)
    return recon - kl, recon, kl


def importance_log_weights(key: jax.Array, x: jax.Array, encode: EncodeFn, log_likelihood: LogLikelihoodFn,
                           num_samples: int) -> jax.Array:
    """``log w_i = log p(x | z_i) + log N(z_i; 0, I) − log q(z_i | x)``, ``z_i ~ q(z|x)``, shape ``[k, B]``
    (Burda et al. 2016, eq. 8, the terms inside the sum)."""
    mean, logvar = encode(x)
    z = reparameterize(key, mean, logvar, num_samples)
    log_q = gaussian_log_likelihood(z, mean, logvar, event_ndim=1)
    log_px_z = jax.vmap(lambda zi: log_likelihood(x, zi))(z)
    return log_px_z + standard_normal_log_prob(z) - log_q


def iwae_estimates(log_weights: LogWeightsFn, key: jax.Array, x: jax.Array, k: int,
                   chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Per-example ``(L_k, mean_i log w_i)`` over ``k`` importance log weights, drawn ``chunk`` at a time.

    ``L_k = logsumexp_i log w_i − log k`` is the importance-weighted bound on ``log p(x)`` (Burda et al.
    2016, eq. 8; ``−L_k`` the IWAE NLL, the convention of ``gm_jax.metrics.likelihood.iwae_bound``);
    ``mean_i log w_i`` is the k-sample ELBO estimate, and ``L_k ≥ mean_i log w_i`` for every draw (Jensen).
    ``log_weights(key, x, n) -> [n, B]`` (e.g. :func:`importance_log_weights` with the encoder and decoder
    bound); chunk ``j`` uses ``fold_in(key, j)`` inside one ``lax.scan`` and the log-sum-exp is accumulated
    with ``logaddexp``, so memory is that of ``chunk`` samples (k ≥ 1000 works). ``chunk=None``: all at once."""
    chunk = k if chunk is None else chunk
    require(k >= 1 and chunk >= 1, f"k and chunk must be >= 1, got k={k}, chunk={chunk}")
    chunk = min(chunk, k)
    require(k % chunk == 0, f"k={k} must be a multiple of chunk={chunk}; change the number of samples or chunk")

    def body(carry: tuple[jax.Array, jax.Array], j: jax.Array) -> tuple[tuple[jax.Array, jax.Array], None]:
        log_w = log_weights(jax.random.fold_in(key, j), x, chunk)
        total, linear_sum = carry
        return (jnp.logaddexp(total, logsumexp(log_w, axis=0)), linear_sum + jnp.sum(log_w, axis=0)), None

    init = (jnp.full((x.shape[0],), -jnp.inf, jnp.float32), jnp.zeros((x.shape[0],), jnp.float32))
    (total, linear_sum), _ = jax.lax.scan(body, init, jnp.arange(k // chunk))
    return total - math.log(k), linear_sum / k


def l1_activity_penalty(codes: jax.Array) -> jax.Array:
    """Per-example ``Σ_j |h_j|`` over the last axis: the L1 sparsity penalty on codes (Goodfellow et al.
    2016, Deep Learning, eq. 14.7 with Ω(h) = λ Σ |h_j|; multiply by λ outside)."""
    return jnp.sum(jnp.abs(codes), axis=-1)


def kl_sparsity_penalty(codes: jax.Array, target: float | jax.Array, eps: float = 1e-6) -> jax.Array:
    """``Σ_j KL(ρ ‖ ρ̂_j) = Σ_j [ρ log(ρ/ρ̂_j) + (1 − ρ) log((1 − ρ)/(1 − ρ̂_j))]`` with ``ρ̂_j`` the mean
    activation of unit ``j`` over the batch (axis 0) of ``codes`` in (0, 1) (Ng 2011, CS294A notes,
    sparse autoencoder). Returns a scalar."""
    rho_hat = jnp.clip(jnp.mean(codes, axis=0), eps, 1.0 - eps)
    rho = jnp.asarray(target, rho_hat.dtype)
    return jnp.sum(rho * jnp.log(rho / rho_hat) + (1.0 - rho) * jnp.log((1.0 - rho) / (1.0 - rho_hat)))


def gaussian_corruption(key: jax.Array, x: jax.Array, noise_std: float | jax.Array) -> jax.Array:
    """Additive isotropic Gaussian corruption ``x̃ = x + σ ε``, ``ε ~ N(0, I)`` (Vincent et al. 2010, sec. 4.3)."""
    return x + noise_std * jax.random.normal(key, x.shape, x.dtype)


def masking_corruption(key: jax.Array, x: jax.Array, mask_prob: float | jax.Array,
                       fill_value: float | jax.Array = 0.0) -> jax.Array:
    """Masking noise: each entry is independently replaced by ``fill_value`` with probability ``p``,
    ``x̃ = m ⊙ x + (1 − m) c``, ``m ~ Bern(1 − p)`` (Vincent et al. 2008, sec. 2.3)."""
    keep = jax.random.bernoulli(key, 1.0 - jnp.asarray(mask_prob), x.shape)
    return jnp.where(keep, x, jnp.asarray(fill_value, x.dtype))
