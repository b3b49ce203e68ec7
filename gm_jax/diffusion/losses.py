"""Training objectives and the variational bound, as pure functions of arrays.

Every denoising objective is a weighted x_0-error: with x_t = α x_0 + σ ε,
‖ε̂ − ε‖² = (α/σ)² ‖x̂_0 − x_0‖² and σ²‖ŝ − ∇log q‖² = (α/σ)² ‖x̂_0 − x_0‖², so the functions below take the
natural prediction of each objective.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import check_choice, require
from gm_jax.diffusion.schedules import DiscreteSchedule, ddpm_posterior
from gm_jax.metrics.likelihood import discretized_gaussian_log_prob


def _mean_per_example(a: jax.Array) -> jax.Array:
    return jnp.mean(a.reshape(a.shape[0], -1), axis=-1)


def eps_mse(eps_pred: jax.Array, eps: jax.Array) -> jax.Array:
    """L_simple = ‖ε − ε_θ(x_t, t)‖², per example, mean over dimensions (Ho et al. 2020, eq. 14)."""
    return _mean_per_example((eps_pred - eps) ** 2)


def denoising_score_matching(score_pred: jax.Array, noise: jax.Array, sigma: jax.Array) -> jax.Array:
    """λ(σ)‖s_θ(x̃, σ) + (x̃ − x)/σ²‖²/2 with λ = σ², i.e. ½‖σ s_θ + z‖² for x̃ = x + σ z (Song & Ermon 2019,
    eqs. 2 and 6; Vincent 2011)."""
    sigma = jnp.reshape(sigma, (-1,) + (1,) * (score_pred.ndim - 1))
    return 0.5 * _mean_per_example((sigma * score_pred + noise) ** 2)


def edm_weight(sigma: jax.Array, sigma_data: float = 0.5) -> jax.Array:
    """λ(σ) = (σ² + σ_d²)/(σ σ_d)² (Karras et al. 2022, Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(denoised: jax.Array, x0: jax.Array, sigma: jax.Array, sigma_data: float = 0.5) -> jax.Array:
    """λ(σ) ‖D_θ(x + n; σ) − x‖² per example (Karras et al. 2022, eq. 2 with Table 1's weighting)."""
    return edm_weight(sigma, sigma_data) * _mean_per_example((denoised - x0) ** 2)


def prediction_mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error per example (x_0- or v-prediction objectives, Salimans & Ho 2022, eq. 9)."""
    return _mean_per_example((pred - target) ** 2)


def sample_training_sigma(key: jax.Array, num: int, p_mean: float = -1.2, p_std: float = 1.2) -> jax.Array:
    """ln σ ~ N(P_mean, P_std²) (Karras et al. 2022, Table 1, training noise distribution)."""
    return jnp.exp(p_mean + p_std * jax.random.normal(key, (num,)))


# ----------------------------------------------------------------------------------------------------------
# Variational bound with a discretized Gaussian decoder (Ho et al. 2020, eqs. 5 and 13)
# ----------------------------------------------------------------------------------------------------------


def normal_kl(mean1: jax.Array, logvar1: jax.Array, mean2: jax.Array, logvar2: jax.Array) -> jax.Array:
    """KL(N(μ₁, e^{v₁}) ‖ N(μ₂, e^{v₂})) elementwise = ½(v₂ − v₁ + e^{v₁−v₂} + (μ₁−μ₂)² e^{−v₂} − 1)."""
    return 0.5 * (logvar2 - logvar1 + jnp.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * jnp.exp(-logvar2) - 1.0)


def discretized_gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_scale: jax.Array,
                                        levels: int = 256) -> jax.Array:
    """log ∫_{δ−(x)}^{δ+(x)} N(u; μ, σ²) du for data on ``levels`` bins scaled to [−1, 1], with the edge bins
    extended to ±∞ (Ho et al. 2020, eq. 13). Elementwise, in nats; see
    :func:`gm_jax.metrics.likelihood.discretized_gaussian_log_prob`."""
    return discretized_gaussian_log_prob(x, mean, log_scale, (-1.0, 1.0), levels)


def vlb_term(schedule: DiscreteSchedule, x0: jax.Array, x_t: jax.Array, index: jax.Array,
             x0_pred: jax.Array, variance: str = "beta_tilde", levels: int = 256,
             model_var: jax.Array | None = None) -> jax.Array:
    """One term of L_vlb in nats per example (Ho et al. 2020, eq. 5): for t ≥ 2 (index ≥ 1)
    L_{t−1} = KL(q(x_{t−1}|x_t, x_0) ‖ p_θ(x_{t−1}|x_t)) with p_θ's mean μ̃(x_t, x̂_0) (eq. 7) and variance
    β̃_t ('beta_tilde'), β_t ('beta') or ``model_var`` (a learned variance, Nichol & Dhariwal 2021); for
    t = 1 the decoder L_0 = −log p_θ(x_0 | x_1): discretized on ``levels`` bins (eq. 13), or a continuous
    Gaussian density when ``levels == 0``. At t = 1 the fixed variance is β_1 (β̃_1 = 0)."""
    check_choice("variance", variance, ("beta_tilde", "beta"))
    shape = (-1,) + (1,) * (x0.ndim - 1)
    true_mean, true_var = ddpm_posterior(schedule, x0, x_t, index, "beta_tilde")
    model_mean, fixed_var = ddpm_posterior(schedule, x0_pred, x_t, index, variance)
    if model_var is None:
        model_var = jnp.where(index == 0, schedule.betas[0], fixed_var)
    lv_model = jnp.broadcast_to(jnp.log(model_var).reshape(shape), x0.shape)
    lv_true = jnp.log(jnp.maximum(true_var, 1e-30)).reshape(shape)
    kl = jnp.sum(normal_kl(true_mean, lv_true, model_mean, lv_model).reshape(x0.shape[0], -1), -1)
    if levels:
        log_lik = discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * lv_model, levels)
    else:
        log_lik = -0.5 * (jnp.log(2 * jnp.pi) + lv_model + (x0 - model_mean) ** 2 * jnp.exp(-lv_model))
    nll = -jnp.sum(log_lik.reshape(x0.shape[0], -1), -1)
    return jnp.where(index == 0, nll, kl)


def vlb(schedule: DiscreteSchedule, key: jax.Array, x0: jax.Array, x0_fn, num_t: int | None = None,
        variance: str = "beta_tilde", levels: int = 256) -> jax.Array:
    """L_vlb = L_T + Σ_{t≥2} L_{t−1} + L_0 in nats per example (Ho et al. 2020, eq. 5), each
    x_t ~ q(x_t | x_0). ``x0_fn(x_t, index, alpha, sigma) -> x̂_0``.

    With ``num_t`` None all T terms are summed. Otherwise L_T and the decoder term L_0 — the largest and
    the one that matters most for bits/dim — are always computed exactly, and the T − 1 KL terms
    L_1..L_{T−1} are estimated without bias by stratified sampling: the indices 1..T−1 are cut into
    ``num_t`` contiguous strata, one index is drawn uniformly from each and its term is weighted by the
    stratum's size. With ``num_t = T − 1`` this is the full sum. The noise of term t depends only on
    (key, t), so estimates with different ``num_t`` share it."""
    T = schedule.num_steps
    kt, kn = jax.random.split(key)
    if num_t is None or T == 1:
        idx = jnp.arange(T)
        weight = jnp.ones((T,))
    else:
        num_t = int(num_t)
        require(1 <= num_t <= T - 1, f"num_t must be in [1, T - 1 = {T - 1}] (or None for all terms), got {num_t}")
        bounds = 1 + (np.arange(num_t + 1) * (T - 1)) // num_t      # strata [bounds[j], bounds[j+1])
        lo, size = jnp.asarray(bounds[:-1]), jnp.asarray(np.diff(bounds))
        draw = lo + jnp.floor(jax.random.uniform(kt, (num_t,)) * size).astype(jnp.int32)
        idx = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.minimum(draw, lo + size - 1)])
        weight = jnp.concatenate([jnp.ones((1,)), size.astype(jnp.float32)])

    def term(carry, iw):
        i, w = iw
        k = jax.random.fold_in(kn, i)
        alpha, sigma = schedule.alpha_sigma(i)
        x_t = alpha * x0 + sigma * jax.random.normal(k, x0.shape)
        return carry + w * vlb_term(schedule, x0, x_t, i, x0_fn(x_t, i, alpha, sigma), variance, levels), None

    total, _ = jax.lax.scan(term, jnp.zeros((x0.shape[0],)), (idx, weight))
    return prior_kl(schedule, x0) + total


def prior_kl(schedule: DiscreteSchedule, x0: jax.Array) -> jax.Array:
    """L_T = KL(q(x_T | x_0) ‖ N(0, I)) in nats per example (Ho et al. 2020, eq. 5)."""
    abar = schedule.alphas_cumprod[-1]
    kl = normal_kl(jnp.sqrt(abar) * x0, jnp.log(1.0 - abar), 0.0, 0.0)
    return jnp.sum(kl.reshape(kl.shape[0], -1), -1)


def bits_per_dim(nats: jax.Array, num_dims: int) -> jax.Array:
    """nats / (D ln 2)."""
    return nats / (num_dims * jnp.log(2.0))
