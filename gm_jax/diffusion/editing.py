"""Image editing on the diffusion core: SDEdit, DDIM-inversion editing and spherical interpolation of noises.

* :func:`sdedit` — SDEdit (Meng et al. 2022, Alg. 1): x_{t_0} = α_{t_0} x + σ_{t_0} z at the grid point of
  strength s ∈ (0, 1], then any registered sampler from that point to the clean end. The sampler runs on
  :func:`tail_grid`, the grid with its first points dropped, so the strength is an array (no recompilation).
* :func:`invert_and_regenerate` — DDIM inversion x → x_{t_0} with one denoiser
  (:func:`~gm_jax.diffusion.samplers.ddim_encode`, Song et al. 2021a, Sec. 4.3) and deterministic DDIM
  back with another (e.g. another label): "DDIM inversion" editing (as in Hertz et al. 2023, Sec. 3).
* :func:`slerp` — spherical linear interpolation of two noises (Shoemake 1985).

A denoiser is ``(x, t, alpha, sigma) -> x̂_0``; a label is the caller's closure. :func:`with_label` turns a
conditional denoiser ``(x, t, alpha, sigma, label) -> x̂_0`` into one. Noise for example i comes from
``first_index + i`` (per-example keys), as in the samplers: the SDEdit noise from
``purpose_key(key, "sdedit")``, the sampler's from ``key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gm_jax.core.options import Option
from gm_jax.core.rng import per_example_normal, purpose_key
from gm_jax.diffusion.parametrization import Denoiser
from gm_jax.diffusion.samplers import SamplerSpec, ddim_chain, ddim_encode, get_sampler, run_chain
from gm_jax.diffusion.schedules import Grid

Info = dict[str, jax.Array]
ConditionalDenoiser = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, Any], jax.Array]

STRENGTH = Option("strength", "float", "editing strength s: the noise level the input is taken to (1: pure noise)",
                  0.5, low=0.0, high=1.0, low_open=True)
EDIT_OPTIONS = (STRENGTH,)


def with_label(conditional: ConditionalDenoiser, label: Any) -> Denoiser:
    """The denoiser ``(x, t, alpha, sigma) -> conditional(x, t, alpha, sigma, label)`` for a fixed label."""
    return lambda x, t, alpha, sigma: conditional(x, t, alpha, sigma, label)


def strength_start(grid: Grid, strength: jax.Array | float) -> jax.Array:
    """The grid point k_0 = N − clip(round(s N), 1, N) of strength s on a grid of N steps: the last
    round(s N) steps run (at least one), s = 1 starts at point 0 (SDEdit's t_0 = s T on the grid)."""
    n = grid.n_steps
    if isinstance(strength, int | float):
        STRENGTH.check(strength)
    run = jnp.clip(jnp.round(jnp.asarray(strength, jnp.float32) * n).astype(jnp.int32), 1, n)
    return n - run


def tail_grid(grid: Grid, start: jax.Array | int) -> Grid:
    """The grid from point ``start`` on: point i is point start + i of ``grid``, n_steps − start steps, the
    clean end and padding (α = 1, σ = 0, t = 0) after it; same static length, so ``start`` may be traced."""
    start = jnp.asarray(start, jnp.int32)
    n = grid.n_steps - start
    idx = jnp.minimum(jnp.arange(grid.max_steps + 1) + start, grid.max_steps)
    used = jnp.arange(grid.max_steps + 1) < n
    pick = lambda a, fill: jnp.where(used, a[idx], fill).astype(a.dtype)
    return Grid(t=pick(grid.t, 0.0), time=pick(grid.time, 0.0), alpha=pick(grid.alpha, 1.0),
                sigma=pick(grid.sigma, 0.0), f=pick(grid.f, 0.0), g2=pick(grid.g2, 0.0), n_steps=n)


def _spec(sampler: str | SamplerSpec) -> SamplerSpec:
    return get_sampler(sampler) if isinstance(sampler, str) else sampler


def sdedit(sampler: str | SamplerSpec, denoiser: Denoiser, key: jax.Array, x: jax.Array, grid: Grid,
           strength: jax.Array | float = 0.5, first_index: jax.Array | int = 0, **options: Any
           ) -> tuple[jax.Array, Info]:
    """SDEdit (Meng et al. 2022, Alg. 1 with K = 1): x_{k_0} = α_{k_0} x + σ_{k_0} z, k_0 =
    :func:`strength_start`, then the registered ``sampler`` (a name or a spec, with its ``options``) on
    :func:`tail_grid` from k_0. Returns (x_0, {"nfe": ..., "start": k_0}). ``denoiser`` may be conditioned
    on another label than the input's (:func:`with_label`)."""
    spec = _spec(sampler)
    spec.reject_unknown(options)
    k0 = strength_start(grid, strength)
    z = per_example_normal(purpose_key(key, "sdedit"), first_index, x.shape, x.dtype)
    x_t = grid.alpha[k0] * x + grid.sigma[k0] * z
    tail = tail_grid(grid, k0)
    out, info = run_chain(spec.chain(denoiser, key, x_t, tail, first_index, **options), tail)
    return out, {**info, "start": k0}


def invert_and_regenerate(source: Denoiser, target: Denoiser, x: jax.Array, grid: Grid,
                          strength: jax.Array | float = 1.0) -> tuple[jax.Array, Info]:
    """DDIM-inversion editing: x_{k_0} = DDIM-encode(x) with ``source`` on :func:`tail_grid` (eq. 14 of
    Song et al. 2021a run backwards), then deterministic DDIM (η = 0) back to the clean end with ``target``.
    With target = source this reconstructs x up to the discretization error. Returns
    (x_edit, {"nfe": encoder + decoder calls, "latent": x_{k_0}, "start": k_0})."""
    k0 = strength_start(grid, strength)
    tail = tail_grid(grid, k0)
    latent, enc = ddim_encode(source, x, tail)
    chain = ddim_chain(target, jax.random.key(0), latent, tail, 0, jnp.zeros((), x.dtype))
    out, dec = run_chain(chain, tail)
    return out, {"nfe": enc["nfe"] + dec["nfe"], "latent": latent, "start": k0}


def slerp(z0: jax.Array, z1: jax.Array, t: jax.Array | float) -> jax.Array:
    """Spherical linear interpolation (Shoemake 1985) per example over all axes but the first:
    sin((1 − t)θ)/sin θ · z_0 + sin(tθ)/sin θ · z_1, cos θ = ⟨z_0, z_1⟩/(‖z_0‖ ‖z_1‖); linear interpolation
    where sin θ < 1e-6 (parallel or antiparallel). ``t`` is a scalar or one value per example."""
    b = z0.shape[0]
    f0, f1 = z0.reshape(b, -1), z1.reshape(b, -1)
    norms = jnp.linalg.norm(f0, axis=-1) * jnp.linalg.norm(f1, axis=-1)
    cos = jnp.clip(jnp.sum(f0 * f1, -1) / jnp.where(norms > 0, norms, 1.0), -1.0, 1.0)
    theta = jnp.arccos(cos)
    sin = jnp.sin(theta)
    t = jnp.broadcast_to(jnp.asarray(t, z0.dtype), (b,))
    small = sin < 1e-6
    safe = jnp.where(small, 1.0, sin)
    w0 = jnp.where(small, 1.0 - t, jnp.sin((1.0 - t) * theta) / safe)
    w1 = jnp.where(small, t, jnp.sin(t * theta) / safe)
    shape = (b,) + (1,) * (z0.ndim - 1)
    return w0.reshape(shape) * z0 + w1.reshape(shape) * z1


__all__ = ["EDIT_OPTIONS", "STRENGTH", "ConditionalDenoiser", "invert_and_regenerate", "sdedit", "slerp",
           "strength_start", "tail_grid", "with_label"]
