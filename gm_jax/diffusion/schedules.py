"""Noise schedules: discrete β-schedules (DDPM), continuous SDEs (VP, sub-VP, VE, EDM) and time grids.

Everything is described by the marginal ``q(x_t | x_0) = N(α_t x_0, σ_t² I)``. The samplers only see
``(α, σ)`` pairs on a grid, plus the linear drift ``f(t)`` and squared diffusion ``g(t)²`` of the SDE
``dx = f(t) x dt + g(t) dw`` for the Euler–Maruyama predictor.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gm_jax.core.errors import check_choice, require

# ----------------------------------------------------------------------------------------------------------
# Discrete schedules (Ho et al. 2020; Nichol & Dhariwal 2021)
# ----------------------------------------------------------------------------------------------------------


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> jax.Array:
    """β_t linear from ``beta_start`` to ``beta_end`` over ``num_steps`` steps (Ho et al. 2020, Sec. 4),
    computed in float64 on the host and cast once to float32."""
    require(num_steps >= 1, f"num_steps must be >= 1, got {num_steps}")
    require(0 < beta_start <= beta_end < 1, f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return jnp.asarray(np.linspace(beta_start, beta_end, num_steps, dtype=np.float64), jnp.float32)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """β_t = min(1 − ᾱ_t/ᾱ_{t−1}, ``max_beta``) of ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2),
    t = 1..T (Nichol & Dhariwal 2021, eq. 17), in float64 on the host (f(T) ≈ 0 cancels in float32)."""
    require(num_steps >= 1, f"num_steps must be >= 1, got {num_steps}")
    t = np.arange(num_steps + 1, dtype=np.float64)
    f = np.cos((t / num_steps + s) / (1 + s) * np.pi / 2) ** 2
    abar = f / f[0]
    return np.clip(1.0 - abar[1:] / abar[:-1], 0.0, max_beta)


def cosine_alphas_cumprod(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> jax.Array:
    """ᾱ_t = ∏_{u≤t} (1 − β_u) of the clipped cosine β-schedule (:func:`cosine_betas`), float64 on the host,
    cast once to float32."""
    return jnp.asarray(np.cumprod(1.0 - cosine_betas(num_steps, s, max_beta)), jnp.float32)


def betas_from_alphas_cumprod(alphas_cumprod: jax.Array) -> jax.Array:
    """β_t = 1 − ᾱ_t / ᾱ_{t−1} with ᾱ_0 = 1 (Ho et al. 2020, eq. 4 inverted)."""
    prev = jnp.concatenate([jnp.ones((1,), alphas_cumprod.dtype), alphas_cumprod[:-1]])
    return 1.0 - alphas_cumprod / prev


def snr(alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """Signal-to-noise ratio SNR = α²/σ² (Kingma et al. 2021, eq. 2); for DDPM, ᾱ_t/(1 − ᾱ_t)."""
    return alpha**2 / sigma**2


def log_snr(alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """λ = log(α²/σ²) (Kingma et al. 2021, eq. 3)."""
    return 2.0 * (jnp.log(alpha) - jnp.log(sigma))


class DiscreteSchedule(struct.PyTreeNode):
    """A discrete forward process with ``betas[i] = β_{i+1}`` (index ``i`` is time step ``i + 1``) and its
    ᾱ table; build it with :func:`schedule_from_betas` (both tables from float64, cast once)."""

    betas: jax.Array
    alphas_cumprod: jax.Array

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]

    def alpha_sigma(self, index: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(√ᾱ_t, √(1 − ᾱ_t)) at integer ``index`` = t − 1 (Ho et al. 2020, eq. 4)."""
        abar = self.alphas_cumprod[index]
        return jnp.sqrt(abar), jnp.sqrt(1.0 - abar)


def discrete_schedule(name: str, num_steps: int = 1000) -> DiscreteSchedule:
    """Named β-schedule: 'linear' (Ho et al. 2020, β scaled by 1000/T as in Nichol & Dhariwal 2021)
    or 'cosine' (Nichol & Dhariwal 2021, eq. 17)."""
    check_choice("discrete schedule", name, ("linear", "cosine"))
    require(num_steps >= 1, f"num_steps must be >= 1, got {num_steps}")
    if name == "linear":
        scale = 1000.0 / num_steps
        lo, hi = 1e-4 * scale, min(0.02 * scale, 0.999)
        require(0 < lo <= hi < 1, f"need 0 < beta_start <= beta_end < 1, got {lo}, {hi}")
        return schedule_from_betas(np.linspace(lo, hi, num_steps, dtype=np.float64))
    return schedule_from_betas(cosine_betas(num_steps))


def schedule_from_betas(betas: np.ndarray) -> DiscreteSchedule:
    """The schedule of host β values: ᾱ_t = ∏ (1 − β) accumulated in float64, both tables cast once to
    float32 (Ho et al. 2020, eq. 4)."""
    betas = np.asarray(betas, np.float64)
    return DiscreteSchedule(jnp.asarray(betas, jnp.float32), jnp.asarray(np.cumprod(1.0 - betas), jnp.float32))


# ----------------------------------------------------------------------------------------------------------
# Forward marginal and posterior (Ho et al. 2020, eqs. 4, 6, 7)
# ----------------------------------------------------------------------------------------------------------


def _bcast(a: jax.Array, x: jax.Array) -> jax.Array:
    a = jnp.asarray(a)
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def q_mean_std(x0: jax.Array, alpha: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean α_t x_0 and std σ_t of q(x_t | x_0) (Ho et al. 2020, eq. 4; α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t))."""
    return _bcast(alpha, x0) * x0, _bcast(sigma, x0) * jnp.ones_like(x0)


def q_sample(x0: jax.Array, alpha: jax.Array, sigma: jax.Array, noise: jax.Array) -> jax.Array:
    """x_t = α_t x_0 + σ_t ε, ε ~ N(0, I) (Ho et al. 2020, eq. 4 reparametrized)."""
    return _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * noise


def transition_alpha_sigma(alpha_s: jax.Array, sigma_s: jax.Array, alpha_t: jax.Array,
                           sigma_t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q(x_s | x_t) = N(α_{s|t} x_t, σ²_{s|t}) for s noisier than t: α_{s|t} = α_s/α_t,
    σ²_{s|t} = σ_s² − α²_{s|t} σ_t² (Kingma et al. 2021, eq. 27). For DDPM with s = t+1: (√(1−β), β)."""
    a = alpha_s / alpha_t
    return a, jnp.maximum(sigma_s**2 - a**2 * sigma_t**2, 0.0)


def posterior_mean_variance(x0: jax.Array, x_s: jax.Array, alpha_s: jax.Array, sigma_s: jax.Array,
                            alpha_t: jax.Array, sigma_t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of q(x_t | x_s, x_0), t less noisy than s (Ho et al. 2020, eqs. 6–7, in the
    (α, σ) form of Kingma et al. 2021, eqs. 28–30):
    μ = α_{s|t} σ_t²/σ_s² x_s + α_t σ²_{s|t}/σ_s² x_0,  σ̃² = σ²_{s|t} σ_t² / σ_s²  (β̃_t for DDPM)."""
    a_st, var_st = transition_alpha_sigma(alpha_s, sigma_s, alpha_t, sigma_t)
    c_s = _bcast(a_st * sigma_t**2 / sigma_s**2, x_s)
    c_0 = _bcast(alpha_t * var_st / sigma_s**2, x_s)
    return c_s * x_s + c_0 * x0, var_st * sigma_t**2 / sigma_s**2


def ddpm_posterior(schedule: DiscreteSchedule, x0: jax.Array, x_t: jax.Array, index: jax.Array,
                   variance: str = "beta_tilde") -> tuple[jax.Array, jax.Array]:
    """Mean μ̃_t(x_t, x_0) and variance of the reverse step from time t = index+1 to t − 1 with the two
    choices of Ho et al. 2020, Sec. 3.2: σ_t² = β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t ('beta_tilde') or β_t
    ('beta'). At t = 1 the mean is x_0 and β̃ = 0."""
    check_choice("posterior variance", variance, ("beta_tilde", "beta"))
    abar = schedule.alphas_cumprod
    abar_t = abar[index]
    abar_prev = jnp.where(index > 0, abar[jnp.maximum(index - 1, 0)], 1.0)
    beta = schedule.betas[index]
    coef0 = jnp.sqrt(abar_prev) * beta / (1.0 - abar_t)
    coeft = jnp.sqrt(1.0 - beta) * (1.0 - abar_prev) / (1.0 - abar_t)
    mean = _bcast(coef0, x0) * x0 + _bcast(coeft, x_t) * x_t
    var = (1.0 - abar_prev) / (1.0 - abar_t) * beta if variance == "beta_tilde" else beta
    return mean, var


# ----------------------------------------------------------------------------------------------------------
# Continuous SDEs (Song et al. 2021, Sec. 3.4 and App. B) and the EDM process (Karras et al. 2022)
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SDE:
    """A linear SDE ``dx = f(t) x dt + g(t) dw`` on t ∈ [0, T] with Gaussian marginal N(α(t) x_0, σ(t)²).

    kind: 'vp' (β(t) = β_min + t(β_max − β_min), Song et al. 2021, eq. 11), 'subvp' (eq. 12),
    've' (σ(t) = σ_min (σ_max/σ_min)^t, eq. 9 continuous form), 'edm' (α = 1, σ(t) = t, Karras et al.
    2022, Table 1).
    """

    kind: str = "vp"
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __post_init__(self) -> None:
        check_choice("sde", self.kind, ("vp", "subvp", "ve", "edm"))

    @property
    def T(self) -> float:
        return self.sigma_max if self.kind == "edm" else 1.0

    def _int_beta(self, t: jax.Array) -> jax.Array:
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def alpha_sigma(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """α(t), σ(t) of the marginal: VP α = exp(−½∫β), σ² = 1 − α²; sub-VP σ = 1 − α²;
        VE α = 1, σ = σ_min(σ_max/σ_min)^t (Song et al. 2021, eq. 29–33); EDM α = 1, σ = t."""
        t = jnp.asarray(t, jnp.float32)
        if self.kind in ("vp", "subvp"):
            alpha = jnp.exp(-0.5 * self._int_beta(t))
            one_m = -jnp.expm1(-self._int_beta(t))
            sigma = jnp.sqrt(one_m) if self.kind == "vp" else one_m
            return alpha, sigma
        if self.kind == "ve":
            return jnp.ones_like(t), self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return jnp.ones_like(t), t

    def coefficients(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(f(t), g(t)²): VP (−β/2, β); sub-VP (−β/2, β(1 − e^{−2∫β})); VE (0, dσ²/dt); EDM (0, 2t)
        (Song et al. 2021, eqs. 9, 11, 12; Karras et al. 2022, eq. 6)."""
        t = jnp.asarray(t, jnp.float32)
        if self.kind in ("vp", "subvp"):
            beta = self.beta_min + t * (self.beta_max - self.beta_min)
            g2 = beta if self.kind == "vp" else beta * -jnp.expm1(-2.0 * self._int_beta(t))
            return -0.5 * beta, g2
        if self.kind == "ve":
            _, sigma = self.alpha_sigma(t)
            return jnp.zeros_like(t), 2.0 * sigma**2 * jnp.log(self.sigma_max / self.sigma_min)
        return jnp.zeros_like(t), 2.0 * t

    def prior_std(self) -> float:
        _, s = self.alpha_sigma(jnp.asarray(self.T))
        return 1.0 if self.kind in ("vp", "subvp") else float(s)

    def prior_logp(self, z: jax.Array) -> jax.Array:
        """log N(z; 0, σ_T² I) summed over all but the batch axis."""
        s = self.prior_std()
        d = z[0].size
        return -0.5 * jnp.sum(z.reshape(z.shape[0], -1) ** 2, -1) / s**2 - d * (jnp.log(s) + 0.5 * jnp.log(2 * jnp.pi))

    def t_from_noise_ratio(self, ratio: jax.Array) -> jax.Array:
        """The time t at which σ(t)/α(t) = ``ratio`` (inverts the schedule; used for EDM σ-grids)."""
        ratio = jnp.asarray(ratio, jnp.float32)
        if self.kind == "vp":
            # ∫β(t) = log(1 + ratio²): solve ½(β_max − β_min) t² + β_min t − c = 0.
            c = jnp.log1p(ratio**2)
            a = 0.5 * (self.beta_max - self.beta_min)
            return (-self.beta_min + jnp.sqrt(self.beta_min**2 + 4 * a * c)) / (2 * a)
        if self.kind == "ve":
            return jnp.log(ratio / self.sigma_min) / jnp.log(self.sigma_max / self.sigma_min)
        if self.kind == "edm":
            return ratio
        raise NotImplementedError("sub-VP has no closed-form inverse")


def make_sde(kind: str, **kwargs: float) -> SDE:
    """An SDE by name ('vp', 'subvp', 've', 'edm') with optional coefficient overrides."""
    check_choice("sde", kind, ("vp", "subvp", "ve", "edm"))
    return SDE(kind=kind, **kwargs)


def edm_sigmas(n: jax.Array, max_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
               rho: float = 7.0) -> jax.Array:
    """σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i < N (Karras et al. 2022, eq. 5),
    padded with zeros to length ``max_steps + 1`` (σ_N = 0)."""
    n = jnp.asarray(n, jnp.int32)
    i = jnp.arange(max_steps + 1, dtype=jnp.float32)
    frac = i / jnp.maximum(n - 1, 1).astype(jnp.float32)
    s = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return jnp.where(i < n, s, 0.0)


# ----------------------------------------------------------------------------------------------------------
# Sampling grids: a padded, fixed-length grid plus the number of steps actually used
# ----------------------------------------------------------------------------------------------------------


class Grid(struct.PyTreeNode):
    """A time grid of static length ``max_steps + 1`` of which the first ``n_steps + 1`` points are used.

    Point i < n_steps is a noise level; point n_steps is the clean end (α = 1, σ = 0); points beyond are
    padding and their steps are skipped. ``t`` is what the network is conditioned on; ``time`` the SDE
    time; ``f``/``g2`` the SDE drift coefficient and squared diffusion there.
    """

    t: jax.Array
    time: jax.Array
    alpha: jax.Array
    sigma: jax.Array
    f: jax.Array
    g2: jax.Array
    n_steps: jax.Array

    @property
    def max_steps(self) -> int:
        return self.t.shape[0] - 1


def _finish(n: jax.Array, t, time, alpha, sigma, f, g2) -> Grid:
    used = jnp.arange(t.shape[0]) < n
    z = lambda a, fill: jnp.where(used, a, fill).astype(jnp.float32)
    return Grid(t=z(t, 0.0), time=z(time, 0.0), alpha=z(alpha, 1.0), sigma=z(sigma, 0.0), f=z(f, 0.0),
                g2=z(g2, 0.0), n_steps=jnp.asarray(n, jnp.int32))


def discrete_grid(schedule: DiscreteSchedule, n_steps: jax.Array, max_steps: int) -> Grid:
    """Indices τ_k = ⌊(N − k)T/N⌋ − 1, k < N ("trailing" spacing, Lin et al. 2024; all T steps when N = T)
    of the DDIM sub-sequence (Song et al. 2021a, Sec. 4.2). The network sees the index τ_k; SDE time is
    (τ_k + 1)/T with β(t) = T β_τ (Song et al. 2021, eq. 10 → 11)."""
    T = schedule.num_steps
    n = jnp.asarray(n_steps, jnp.int32)
    k = jnp.arange(max_steps + 1)
    idx = jnp.clip((n - k) * T // jnp.maximum(n, 1) - 1, 0, T - 1)
    alpha, sigma = schedule.alpha_sigma(idx)
    beta = schedule.betas[idx]
    return _finish(n, idx.astype(jnp.float32), (idx + 1) / T, alpha, sigma, -0.5 * T * beta, T * beta)


def sde_grid(sde: SDE, n_steps: jax.Array, max_steps: int, eps: float = 1e-3) -> Grid:
    """Uniform times t_k = T − k (T − ε)/(N − 1), k < N (Song et al. 2021, App. C), then the clean end."""
    n = jnp.asarray(n_steps, jnp.int32)
    k = jnp.arange(max_steps + 1, dtype=jnp.float32)
    time = sde.T - k * (sde.T - eps) / jnp.maximum(n - 1, 1).astype(jnp.float32)
    alpha, sigma = sde.alpha_sigma(time)
    f, g2 = sde.coefficients(time)
    return _finish(n, time, time, alpha, sigma, f, g2)


def edm_grid(sde: SDE, n_steps: jax.Array, max_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
             rho: float = 7.0) -> Grid:
    """Karras et al. 2022, eq. 5 grid in σ/α, mapped to the SDE's time by inverting its schedule."""
    ratio = edm_sigmas(n_steps, max_steps, sigma_min, sigma_max, rho)
    time = sde.t_from_noise_ratio(jnp.maximum(ratio, 1e-12))
    alpha, sigma = sde.alpha_sigma(time)
    f, g2 = sde.coefficients(time)
    return _finish(jnp.asarray(n_steps, jnp.int32), time, time, alpha, sigma, f, g2)


GRIDS = ("discrete", "uniform", "edm")


def _check_concrete_steps(n_steps: jax.Array | int, max_steps: int) -> None:
    """1 <= n_steps <= max_steps when n_steps is known outside a trace (more would silently drop steps)."""
    try:
        n = int(n_steps)
    except (jax.errors.TracerIntegerConversionError, jax.errors.ConcretizationTypeError, TypeError):
        return
    require(1 <= n <= max_steps, f"n_steps must be in [1, max_steps = {max_steps}], got {n}; "
            "raise max_steps (a static grid length) or take fewer steps")


def make_grid(name: str, process: DiscreteSchedule | SDE, n_steps: jax.Array, max_steps: int,
              **kwargs: float) -> Grid:
    """A grid by name: 'discrete' (DDPM/DDIM index sub-sequence), 'uniform' (SDE times), 'edm' (ρ-spaced
    σ). ``n_steps`` may be a traced array; ``max_steps`` is static (the only shape)."""
    check_choice("grid", name, GRIDS)
    _check_concrete_steps(n_steps, max_steps)
    if isinstance(process, DiscreteSchedule):
        require(name == "discrete", f"grid {name!r} needs a continuous SDE; use grid='discrete'")
        return discrete_grid(process, n_steps, max_steps)
    require(name != "discrete", "grid 'discrete' needs a DiscreteSchedule; use 'uniform' or 'edm'")
    if name == "uniform":
        return sde_grid(process, n_steps, max_steps, **kwargs)
    require(process.kind != "subvp", "grid 'edm' is not available for the sub-VP SDE; use 'uniform'")
    return edm_grid(process, n_steps, max_steps, **kwargs)
