"""Exponential-integrator samplers in the data-prediction (x̂_0) form on the λ = log(α/σ) grid:
DPM-Solver++(2S) ancestral, DPM-Solver++(3M) SDE (Lu et al. 2022b) and UniPC (Zhao et al. 2023).

They follow :mod:`gm_jax.diffusion.samplers`: one chain builder plus one :class:`SamplerSpec` each, numbers
as arrays (no recompilation), exact NFE, per-example noise of ``(key, step, example index)``, and the step
into σ = 0 is x̂_0 of the last noise level (no noise). With y = x/α, σ̃ = σ/α = e^{−λ} and h = λ_t − λ_s,
the first-order step shared by all of them is DDIM's y_t = e^{−h} y_s + (1 − e^{−h}) x̂_0 (Lu et al. 2022b,
eq. 9). This module registers its samplers when imported; :mod:`gm_jax.diffusion.samplers` imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from gm_jax.core.errors import check_choice
from gm_jax.core.options import Option
from gm_jax.diffusion.parametrization import Denoiser
from gm_jax.diffusion.samplers import (
    ANCESTRAL_ETA,
    Chain,
    SamplerSpec,
    _at,
    _noise,
    ancestral_split,
    level_at,
    register_sampler,
    start,
)
from gm_jax.diffusion.schedules import Grid

# ----------------------------------------------------------------------------------------------------------
# DPM-Solver++(2S) ancestral
# ----------------------------------------------------------------------------------------------------------


def dpmpp_2s_ancestral_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                             first_index: jax.Array | int = 0, ancestral_eta: jax.Array | float = 1.0) -> Chain:
    """DPM-Solver++(2S) ancestral (Lu et al. 2022b, Alg. 1 with r = 1/2, in the ancestral form of
    :func:`~gm_jax.diffusion.samplers.euler_ancestral_chain`): split the step σ̃_s → σ̃_t into σ_down and
    σ_up (:func:`ancestral_split`); with h = log(σ̃_s/σ_down) the midpoint σ̃_m = σ̃_s e^{−h/2},
    y_m = e^{−h/2} y_s + (1 − e^{−h/2}) x̂_0(y_s; σ̃_s), then y_t = e^{−h} y_s + (1 − e^{−h}) x̂_0(y_m; σ̃_m)
    + σ_up z. The step into σ = 0 is x̂_0 (one call): NFE = 2N − 1. η = 0: DPM-Solver++(2S), 2nd order
    (no noise drawn). The midpoint's (t, α) come from :func:`level_at`."""
    eta = jnp.asarray(ancestral_eta, x_T.dtype)

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        x0 = denoiser(x, t_s, a_s, s_s)
        y, r_s = x / a_s, s_s / a_s
        down, up = ancestral_split(r_s, s_t / a_t, eta)
        last = down <= 0

        def midpoint():
            h = jnp.log(r_s / jnp.where(last, 1.0, down))
            r_m = r_s * jnp.exp(-0.5 * h)
            t_m, a_m, s_m = level_at(grid, r_m)
            y_m = jnp.exp(-0.5 * h) * y - jnp.expm1(-0.5 * h) * x0
            x0_m = denoiser(a_m * y_m, t_m, a_m, s_m)
            return jnp.exp(-h) * y - jnp.expm1(-h) * x0_m

        y_next = lax.cond(last, lambda: x0, midpoint)
        y_next = lax.cond(up > 0, lambda: y_next + up * _noise(key, k, x, first_index), lambda: y_next)
        return a_t * y_next, nfe + 1 + jnp.logical_not(last).astype(jnp.int32), extra

    return Chain(start(x_T), step)


# ----------------------------------------------------------------------------------------------------------
# DPM-Solver++(3M) SDE
# ----------------------------------------------------------------------------------------------------------


def dpmpp_3m_corrections(x0s: jax.Array, hs: jax.Array, he: jax.Array, n_prev: jax.Array) -> jax.Array:
    """The 2nd- and 3rd-order terms of DPM-Solver++(3M) (SDE) (Lu et al. 2022b, multistep; with η through
    h_η = (1 + η) h): with r_0 = h_1/h, r_1 = h_2/h, D_0 = (x̂_0 − x̂_{0,1})/r_0, D_1 = (x̂_{0,1} − x̂_{0,2})/r_1
    (divided differences times h in λ),
        3rd order: φ_2 (D_0 + (D_0 − D_1) r_0/(r_0 + r_1)) − 2 φ_3 (D_0 − D_1)/(r_0 + r_1),
        2nd order: φ_2 D_0,
    φ_2 = (e^{−h_η} − 1)/h_η + 1, φ_3 = φ_2/h_η − 1/2: the integrals ∫_0^h e^{τ−h} τ^j/j! dτ of the Taylor
    terms h D', h² D''/2 of x̂_0 in λ are h φ_2 and −h² φ_3, and (D_0 − D_1)/(r_0 + r_1) = h² D''/2 + O(h³),
    hence the factor 2 (k-diffusion's sample_dpmpp_3m_sde weights it by φ_3 alone, which leaves half of the
    D'' term and only 2nd order). ``x0s`` [3]: x̂_0 now and at the two previous points; ``hs`` [3]: h now and
    of the two previous steps; ``n_prev``: how many previous points to use (0, 1, 2)."""
    h, h1, h2 = hs[0], jnp.where(n_prev > 0, hs[1], 1.0), jnp.where(n_prev > 1, hs[2], 1.0)
    phi2 = jnp.expm1(-he) / he + 1.0
    phi3 = phi2 / he - 0.5
    r0, r1 = h1 / h, h2 / h
    d0 = (x0s[0] - x0s[1]) / r0
    d1 = (x0s[1] - x0s[2]) / r1
    third = phi2 * (d0 + (d0 - d1) * r0 / (r0 + r1)) - 2.0 * phi3 * (d0 - d1) / (r0 + r1)
    return jnp.where(n_prev > 1, third, jnp.where(n_prev > 0, phi2 * d0, 0.0))


def dpmpp_3m_sde_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                       first_index: jax.Array | int = 0, ancestral_eta: jax.Array | float = 1.0,
                       s_noise: jax.Array | float = 1.0) -> Chain:
    """DPM-Solver++(3M) SDE (Lu et al. 2022b, SDE-DPM-Solver++ with 3rd-order multistep, η between the ODE
    and the SDE): in y = x/α with h = log(σ̃_s/σ̃_t), h_η = (1 + η) h,
    y_t = e^{−h_η} y_s + (1 − e^{−h_η}) x̂_0 + :func:`dpmpp_3m_corrections` + σ̃_t √(1 − e^{−2ηh}) S_noise z;
    1st order on the first step, 2nd order on the second, and x̂_0 (no noise) into σ = 0. η = 0: the ODE
    solver DPM-Solver++(3M), 3rd order, no noise drawn. ``extra`` = (x̂_0 and h of the last two steps)."""
    eta, s_noise = (jnp.asarray(v, x_T.dtype) for v in (ancestral_eta, s_noise))
    history = (jnp.zeros((2,) + x_T.shape, x_T.dtype), jnp.ones((2,), x_T.dtype))

    def step(carry, k):
        x, nfe, (x0_prev, h_prev) = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        x0 = denoiser(x, t_s, a_s, s_s)
        r_s, r_t = s_s / a_s, s_t / a_t
        last = s_t <= 0
        h = jnp.log(r_s / jnp.where(last, 1.0, r_t))
        h = jnp.where(last, 1.0, h).astype(x.dtype)
        he = (1.0 + eta) * h
        x0s = jnp.concatenate([x0[None], x0_prev], 0)
        hs = jnp.concatenate([h[None], h_prev], 0)
        y = jnp.exp(-he) * (x / a_s) - jnp.expm1(-he) * x0 + dpmpp_3m_corrections(x0s, hs, he, jnp.minimum(k, 2))
        scale = jnp.where(last, 0.0, r_t * jnp.sqrt(jnp.maximum(-jnp.expm1(-2.0 * eta * h), 0.0)) * s_noise)
        y = lax.cond(scale > 0, lambda: y + scale * _noise(key, k, x, first_index), lambda: y)
        y = jnp.where(last, x0, y)
        return a_t * y, nfe + 1, (x0s[:2], hs[:2])

    return Chain(start(x_T, history), step)


# ----------------------------------------------------------------------------------------------------------
# UniPC
# ----------------------------------------------------------------------------------------------------------

UNIPC_MAX_ORDER = 3
UNIPC_VARIANTS = ("bh1", "bh2")


def _masked_solve(nodes: jax.Array, rhs: jax.Array, size: jax.Array) -> jax.Array:
    """ρ solving Σ_j ρ_j c_j^{i} = b_i for i < size over the first ``size`` nodes c_j (a Vandermonde
    system; unused rows and columns are the identity, their ρ zero)."""
    m = nodes.shape[0]
    i, j = jnp.arange(m)[:, None], jnp.arange(m)[None, :]
    active = jnp.logical_and(i < size, j < size)
    mat = jnp.where(active, nodes[None, :] ** i, (i == j).astype(nodes.dtype))
    return jnp.linalg.solve(mat, jnp.where(jnp.arange(m) < size, rhs, 0.0))


def unipc_coefficients(h: jax.Array, rks: jax.Array, order: jax.Array, variant: str
                       ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """UniPC's coefficients in the data-prediction form (Zhao et al. 2023, Alg. 2–3 and App. with
    hh = −h): e^{hh} − 1; B(h) = hh ('bh1') or e^{hh} − 1 ('bh2'); b_i = i! g_i/B(h) with
    g_1 = (e^{hh} − 1)/hh − 1, g_{i+1} = g_i/hh − 1/(i+1)!; the predictor UniP-p weights ρ_p solving
    Σ_j ρ_j r_j^{i−1} = b_i (i < p) over the nodes r_1..r_{p−1} (ρ = 1/2 for p = 2), and the corrector UniC-p
    weights ρ_c over the nodes r_1..r_{p−1}, 1 (i ≤ p; ρ = 1/2 for p = 1). ``rks`` [2]: r_i = (λ_{s−i} − λ_s)/h.
    Returns (e^{hh} − 1, B(h), ρ_p [2], ρ_c [3])."""
    check_choice("unipc_variant", variant, UNIPC_VARIANTS)
    hh = -h
    phi1 = jnp.expm1(hh)
    b_h = hh if variant == "bh1" else phi1
    g1 = phi1 / hh - 1.0
    g2 = g1 / hh - 0.5
    g3 = g2 / hh - 1.0 / 6.0
    b = jnp.stack([g1, 2.0 * g2, 6.0 * g3]) / b_h
    rho_p = _masked_solve(rks, b[:2], order - 1)
    rho_p = jnp.where(order == 2, jnp.array([0.5, 0.0], h.dtype), rho_p)
    idx = jnp.arange(UNIPC_MAX_ORDER)
    nodes_c = jnp.where(idx < order - 1, jnp.concatenate([rks, jnp.ones((1,), h.dtype)]),
                        jnp.where(idx == order - 1, 1.0, 0.0))
    rho_c = _masked_solve(nodes_c, b, order)
    rho_c = jnp.where(order == 1, jnp.array([0.5, 0.0, 0.0], h.dtype), rho_c)
    return phi1, b_h, rho_p, rho_c


def unipc_update(x_s: jax.Array, ms: jax.Array, lams: jax.Array, lam_t: jax.Array, level_s: tuple, level_t: tuple,
                 order: jax.Array, variant: str, m_t: jax.Array | None = None) -> jax.Array:
    """One UniPC update from point s to t in x (Zhao et al. 2023, eqs. 8–9, data prediction):
    x̃_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) m_s, D_i = (m_{s−i} − m_s)/r_i, then the predictor UniP-p
    x_t = x̃_t − α_t B(h) Σ_{i<p} ρ_{p,i} D_i, or with ``m_t`` = x̂_0 at the predicted x_t the corrector UniC-p
    x_t^c = x̃_t − α_t B(h) (Σ_{i<p} ρ_{c,i} D_i + ρ_{c,p} (m_t − m_s)). ``ms``/``lams`` [3]: x̂_0 and λ at s
    and the two points before it, newest first; ``level_*`` = (α, σ)."""
    (_, s_s), (a_t, s_t) = level_s, level_t
    h = lam_t - lams[0]
    has = jnp.arange(1, UNIPC_MAX_ORDER) < order
    rks = jnp.where(has, (lams[1:] - lams[0]) / h, -1.0 - jnp.arange(1, UNIPC_MAX_ORDER))
    phi1, b_h, rho_p, rho_c = unipc_coefficients(h, rks, order, variant)
    bshape = (-1,) + (1,) * (ms.ndim - 1)
    d1s = jnp.where(has.reshape(bshape), (ms[1:] - ms[0]) / rks.reshape(bshape), 0.0)
    base = (s_t / s_s) * x_s - a_t * phi1 * ms[0]
    if m_t is None:
        return base - a_t * b_h * jnp.tensordot(rho_p.astype(x_s.dtype), d1s, axes=1)
    res = jnp.tensordot(rho_c[:2].astype(x_s.dtype), d1s, axes=1) + rho_c[order - 1].astype(x_s.dtype) * (m_t - ms[0])
    return base - a_t * b_h * res


def unipc_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0,
                unipc_order: jax.Array | int = 3, unipc_variant: str = "bh2", unipc_corrector: jax.Array | int = 1
                ) -> Chain:
    """UniPC (Zhao et al. 2023, Alg. 2–3) on the grid's λ = log(α/σ): at step k, m_k = x̂_0(x_k) (the one
    denoiser call of the step), then — for k ≥ 1, with ``unipc_corrector`` — UniC corrects x_k with m_k
    (the model value of the predicted point, not re-evaluated: NFE = steps), then UniP predicts x_{k+1}
    (:func:`unipc_update`), at order min(``unipc_order``, k + 1) for both. The step into σ = 0 is m_k (so no
    corrector follows the last step). Order p: p without the corrector, p + 1 with it; order 1 without the
    corrector is DDIM. ``extra`` = (the corrected x_{k−1}, x̂_0 and λ of the last 3 points, newest first)."""
    del key, first_index
    check_choice("unipc_variant", unipc_variant, UNIPC_VARIANTS)
    order = jnp.clip(jnp.asarray(unipc_order, jnp.int32), 1, UNIPC_MAX_ORDER)
    corrector = jnp.asarray(unipc_corrector, jnp.int32) > 0
    history = (x_T, jnp.zeros((UNIPC_MAX_ORDER,) + x_T.shape, x_T.dtype), jnp.zeros((UNIPC_MAX_ORDER,), x_T.dtype))

    def step(carry, k):
        x, nfe, (x_prev, ms, lams) = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_p, s_p = _at(grid, jnp.maximum(k - 1, 0))
        _, a_t, s_t = _at(grid, k + 1)
        m = denoiser(x, t_s, a_s, s_s)
        lam_s = jnp.log(a_s / s_s).astype(x.dtype)
        correct = jnp.logical_and(corrector, k > 0)
        x = lax.cond(correct, lambda: unipc_update(x_prev, ms, lams, lam_s, (a_p, s_p), (a_s, s_s),
                                                   jnp.minimum(order, k), unipc_variant, m), lambda: x)
        ms = jnp.concatenate([m[None], ms[:-1]], 0)
        lams = jnp.concatenate([lam_s[None], lams[:-1]], 0)
        last = s_t <= 0
        lam_t = jnp.where(last, lam_s + 1.0, jnp.log(a_t / jnp.where(last, 1.0, s_t))).astype(x.dtype)
        x_next = unipc_update(x, ms, lams, lam_t, (a_s, s_s), (a_t, jnp.where(last, 1.0, s_t)),
                              jnp.minimum(order, k + 1), unipc_variant)
        return jnp.where(last, a_t * m, x_next), nfe + 1, (x, ms, lams)

    return Chain(start(x_T, history), step)


# ----------------------------------------------------------------------------------------------------------
# Registrations
# ----------------------------------------------------------------------------------------------------------


def _two_per_step_nfe(steps: int, options: Mapping[str, Any]) -> int:
    del options
    return 2 * steps - 1


register_sampler(SamplerSpec(
    "dpmpp_2s_ancestral", dpmpp_2s_ancestral_chain, options=(ANCESTRAL_ETA,), nfe=_two_per_step_nfe,
    help="DPM-Solver++(2S) ancestral: midpoint in λ down to σ_down, then noise σ_up (Lu et al. 2022b)"))
register_sampler(SamplerSpec(
    "dpmpp_3m_sde", dpmpp_3m_sde_chain, help="DPM-Solver++(3M) SDE, 3rd-order multistep (Lu et al. 2022b)",
    options=(ANCESTRAL_ETA,
             Option("s_noise", "float", "scale of the added noise (dpmpp_3m_sde: of its SDE noise)", 1.0, low=0.0))))
register_sampler(SamplerSpec(
    "unipc", unipc_chain, deterministic=True, help="UniPC predictor–corrector, data prediction (Zhao et al. 2023)",
    options=(Option("unipc_order", "int", "UniPC order p of the predictor (p + 1 with the corrector)", 3, low=1,
                    high=UNIPC_MAX_ORDER),
             Option("unipc_variant", "str", "UniPC B(h): bh1 = h, bh2 = e^h − 1", "bh2", choices=UNIPC_VARIANTS),
             Option("unipc_corrector", "int", "UniPC corrector UniC after each step (1) or not (0)", 1, low=0,
                    high=1))))


__all__ = ["UNIPC_MAX_ORDER", "UNIPC_VARIANTS", "dpmpp_2s_ancestral_chain", "dpmpp_3m_corrections",
           "dpmpp_3m_sde_chain", "unipc_chain", "unipc_coefficients", "unipc_update"]
