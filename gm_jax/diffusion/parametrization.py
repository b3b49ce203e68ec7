"""Conversions between ε-, x_0-, v- and score-predictions, EDM preconditioning, and the one model wrapper
that turns a network of any parametrization (plus classifier-free guidance) into the sampler's denoiser.

All conversions use x_t = α x_0 + σ ε (Kingma et al. 2021, eq. 1), so they hold for VP, sub-VP and VE.
A denoiser is ``denoiser(x, t, alpha, sigma) -> x̂_0`` with scalar ``t``, ``alpha``, ``sigma``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice

Denoiser = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]
PARAMETRIZATIONS = ("eps", "x0", "v", "score", "edm")


def eps_to_x0(x: jax.Array, eps: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """x̂_0 = (x_t − σ ε̂)/α (Ho et al. 2020, eq. 15)."""
    return (x - sigma * eps) / alpha


def x0_to_eps(x: jax.Array, x0: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """ε̂ = (x_t − α x̂_0)/σ (Ho et al. 2020, eq. 4 solved for ε)."""
    return (x - alpha * x0) / sigma


def x0_to_score(x: jax.Array, x0: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """∇ log p_t(x) = (α x̂_0 − x_t)/σ² (Tweedie; Song et al. 2021, eq. 7 with the Gaussian kernel)."""
    return (alpha * x0 - x) / sigma**2


def score_to_x0(x: jax.Array, score: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """x̂_0 = (x_t + σ² s)/α (Tweedie's formula, Efron 2011)."""
    return (x + sigma**2 * score) / alpha


def eps_to_score(eps: jax.Array, sigma: jax.Array) -> jax.Array:
    """s = −ε̂/σ (Song et al. 2021, App. B / Vincent 2011)."""
    return -eps / sigma


def x0_to_v(x: jax.Array, x0: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """v = α ε − σ x_0 (Salimans & Ho 2022, Sec. 4 / App. D)."""
    return alpha * x0_to_eps(x, x0, alpha, sigma) - sigma * x0


def v_to_x0(x: jax.Array, v: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """x̂_0 = (α x_t − σ v)/(α² + σ²): Salimans & Ho 2022, eq. 11 (α² + σ² = 1 there), for any α, σ."""
    return (alpha * x - sigma * v) / (alpha**2 + sigma**2)


def to_x0(kind: str, out: jax.Array, x: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """x̂_0 from a prediction of kind 'eps', 'x0', 'v' or 'score'."""
    check_choice("parametrization", kind, ("eps", "x0", "v", "score"))
    if kind == "eps":
        return eps_to_x0(x, out, alpha, sigma)
    if kind == "v":
        return v_to_x0(x, out, alpha, sigma)
    if kind == "score":
        return score_to_x0(x, out, alpha, sigma)
    return out


def from_x0(kind: str, x0: jax.Array, x: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """The 'eps', 'x0', 'v' or 'score' prediction equivalent to x̂_0 (inverse of :func:`to_x0`)."""
    check_choice("parametrization", kind, ("eps", "x0", "v", "score"))
    if kind == "eps":
        return x0_to_eps(x, x0, alpha, sigma)
    if kind == "v":
        return x0_to_v(x, x0, alpha, sigma)
    if kind == "score":
        return x0_to_score(x, x0, alpha, sigma)
    return x0


def edm_preconditioning(sigma: jax.Array, sigma_data: float = 0.5
                        ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(c_skip, c_out, c_in, c_noise) = (σ_d²/(σ² + σ_d²), σ σ_d/√(σ² + σ_d²), 1/√(σ² + σ_d²), ¼ ln σ)
    (Karras et al. 2022, Table 1, eq. 7)."""
    s2 = sigma**2 + sigma_data**2
    return sigma_data**2 / s2, sigma * sigma_data / jnp.sqrt(s2), 1.0 / jnp.sqrt(s2), 0.25 * jnp.log(sigma)


def network_x0(kind: str, net: Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array], x: jax.Array,
               t: jax.Array, alpha: jax.Array, sigma: jax.Array, label: jax.Array | None = None,
               time_scale: float = 1.0, sigma_data: float = 0.5) -> jax.Array:
    """x̂_0 from ``net(x_in, t_in, label)`` of parametrization ``kind``. For 'edm' the network sees
    c_in · x/α and ``time_scale`` · c_noise(σ/α) and D = c_skip y + c_out F on y = x/α, σ̃ = σ/α (Karras et al. 2022,
    eq. 7 and App. C.2 for α ≠ 1); otherwise it sees x and ``time_scale · t``."""
    check_choice("parametrization", kind, PARAMETRIZATIONS)
    batch = x.shape[0]
    if kind == "edm":
        y, s = x / alpha, sigma / alpha
        c_skip, c_out, c_in, c_noise = edm_preconditioning(s, sigma_data)
        out = net(c_in * y, jnp.broadcast_to(jnp.reshape(time_scale * c_noise, (-1,)), (batch,)), label)
        return c_skip * y + c_out * out
    out = net(x, jnp.broadcast_to(jnp.reshape(time_scale * t, (-1,)), (batch,)).astype(jnp.float32), label)
    return to_x0(kind, out, x, alpha, sigma)


def make_denoiser(kind: str, net: Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array],
                  label: jax.Array | None = None, guidance: jax.Array | float = 1.0,
                  null_label: int | None = None, time_scale: float = 1.0, sigma_data: float = 0.5
                  ) -> Denoiser:
    """The denoiser the samplers consume, from a network of any parametrization.

    With ``label`` and ``null_label``, classifier-free guidance (Ho & Salimans 2022, eq. 6):
    x̂_0 = x̂_0(x | ∅) + w (x̂_0(x | c) − x̂_0(x | ∅)), one batched pass over [conditional; null]. Since x̂_0
    is affine in ε̂ for fixed x, this is the same as guiding ε̂. ``guidance`` w is an array (w = 1: plain
    conditional). Without ``null_label`` the label (or None) is passed through unguided.
    """
    check_choice("parametrization", kind, PARAMETRIZATIONS)

    def plain(x, t, alpha, sigma):
        return network_x0(kind, net, x, t, alpha, sigma, label, time_scale, sigma_data)

    if label is None or null_label is None:
        return plain

    def guided(x, t, alpha, sigma):
        b = x.shape[0]
        both_x = jnp.concatenate([x, x], 0)
        both_l = jnp.concatenate([label, jnp.full_like(label, null_label)], 0)
        x0 = network_x0(kind, net, both_x, t, alpha, sigma, both_l, time_scale, sigma_data)
        cond, uncond = x0[:b], x0[b:]
        return uncond + jnp.asarray(guidance, x.dtype) * (cond - uncond)

    return guided
