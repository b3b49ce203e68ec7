"""Hopfield networks (Hopfield 1982): Hebbian storage, energy, synchronous and asynchronous recall, and a
capacity study.

States are ``±1`` vectors of ``N`` units, ``[..., N]``. Weights are symmetric with a zero diagonal, so the
energy never increases under asynchronous (one unit at a time) updates.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import require


@jax.jit
def hebbian_weights(patterns: jax.Array) -> jax.Array:
    """Hebbian outer-product rule (Hopfield 1982, eq. 2): ``W = (1/N) sum_mu p_mu p_mu^T`` with ``W_ii = 0``.

    ``patterns`` is ``[P, N]`` with entries ``±1``; returns ``[N, N]``.
    """
    require(patterns.ndim == 2, f"patterns must be [P, N], got shape {patterns.shape}")
    p = jnp.asarray(patterns, jnp.float32)
    n = p.shape[1]
    w = p.T @ p / n
    return w * (1.0 - jnp.eye(n, dtype=w.dtype))


@jax.jit
def projection_weights(patterns: jax.Array) -> jax.Array:
    """Projection (pseudo-inverse) rule (Personnaz, Guyon & Dreyfus 1985; Kanter & Sompolinsky 1987):
    ``W = (1/N) P^T C^-1 P`` with the overlap matrix ``C = P P^T / N``, then ``W_ii = 0``.

    ``W`` projects onto the span of the patterns, so linearly independent patterns are fixed points even
    when they are correlated (digit images, where the Hebbian rule's crosstalk ``sum_nu p_nu (p_nu . x)/N``
    swamps the signal). For orthogonal patterns it equals ``hebbian_weights``. ``patterns`` is ``[P, N]``
    with ``P < N`` linearly independent ``±1`` rows; symmetric, so asynchronous updates never raise the
    energy. Returns ``[N, N]``.
    """
    require(patterns.ndim == 2 and patterns.shape[0] < patterns.shape[1],
            f"patterns must be [P, N] with P < N, got shape {patterns.shape}")
    p = jnp.asarray(patterns, jnp.float32)
    n = p.shape[1]
    overlaps = p @ p.T / n
    w = p.T @ jnp.linalg.solve(overlaps, p) / n
    w = 0.5 * (w + w.T)
    return w * (1.0 - jnp.eye(n, dtype=w.dtype))


def hopfield_energy(weights: jax.Array, x: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """Energy ``E(x) = -1/2 x^T W x - b^T x`` (Hopfield 1982, eq. 7) of states ``x [..., N]`` -> ``[...]``."""
    x = jnp.asarray(x, jnp.float32)
    e = -0.5 * jnp.einsum("...i,ij,...j->...", x, weights, x)
    if bias is not None:
        e = e - x @ bias
    return e


def _threshold(field: jax.Array, current: jax.Array) -> jax.Array:
    """``sign(field)``, keeping the current value where the field is exactly zero."""
    return jnp.where(field > 0, 1.0, jnp.where(field < 0, -1.0, current))


def sync_update(weights: jax.Array, x: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """Synchronous (Little) update of all units at once: ``x_i <- sign(sum_j W_ij x_j + b_i)``."""
    x = jnp.asarray(x, jnp.float32)
    field = x @ weights.T
    if bias is not None:
        field = field + bias
    return _threshold(field, x)


@jax.jit
def sync_recall(weights: jax.Array, x: jax.Array, num_steps: int | jax.Array,
                bias: jax.Array | None = None) -> jax.Array:
    """``num_steps`` synchronous updates (``sync_update``) of ``x [..., N]`` as one ``fori_loop``."""
    x = jnp.asarray(x, jnp.float32)
    return jax.lax.fori_loop(0, num_steps, lambda _, s: sync_update(weights, s, bias), x)


def async_update_unit(weights: jax.Array, x: jax.Array, unit: int | jax.Array,
                      bias: jax.Array | None = None) -> jax.Array:
    """Asynchronous update of one unit ``i`` of a single state ``x [N]`` (Hopfield 1982, eq. 1):
    ``x_i <- sign(sum_j W_ij x_j + b_i)``; the state is unchanged where the field is zero."""
    field = weights[unit] @ x
    if bias is not None:
        field = field + bias[unit]
    return x.at[unit].set(_threshold(field, x[unit]))


@functools.partial(jax.jit, static_argnames=("num_sweeps",))
def async_recall(weights: jax.Array, x: jax.Array, key: jax.Array, num_sweeps: int,
                 bias: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Asynchronous recall: ``num_sweeps`` sweeps, each updating every unit once (``async_update_unit``) in a
    random order drawn from ``fold_in(key, sweep)``. One ``lax.scan`` over sweeps.

    ``x`` is ``[N]`` or ``[B, N]`` (each row gets its own order). Returns the final states and the energy
    after each sweep, ``[num_sweeps]`` or ``[num_sweeps, B]``.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim == 2:
        keys = jax.random.split(key, x.shape[0])
        final, energies = jax.vmap(lambda s, k: _async_recall_one(weights, s, k, num_sweeps, bias))(x, keys)
        return final, energies.T
    return _async_recall_one(weights, x, key, num_sweeps, bias)


def _async_recall_one(weights: jax.Array, x: jax.Array, key: jax.Array, num_sweeps: int,
                      bias: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    n = x.shape[-1]

    def sweep(state: jax.Array, index: jax.Array) -> tuple[jax.Array, jax.Array]:
        order = jax.random.permutation(jax.random.fold_in(key, index), n)
        state = jax.lax.fori_loop(0, n, lambda i, s: async_update_unit(weights, s, order[i], bias), state)
        return state, hopfield_energy(weights, state, bias)

    return jax.lax.scan(sweep, x, jnp.arange(num_sweeps))


@jax.jit
def corrupt_patterns(key: jax.Array, patterns: jax.Array, flip_fraction: float | jax.Array) -> jax.Array:
    """Flip exactly ``round(flip_fraction * N)`` randomly chosen units of each pattern ``[..., N]``."""
    patterns = jnp.asarray(patterns, jnp.float32)
    n = patterns.shape[-1]
    num_flips = jnp.round(jnp.asarray(flip_fraction) * n)
    ranks = jnp.argsort(jax.random.uniform(key, patterns.shape), axis=-1).argsort(axis=-1)
    return jnp.where(ranks < num_flips, -patterns, patterns)


def overlap(x: jax.Array, patterns: jax.Array) -> jax.Array:
    """Overlap ``m = (1/N) sum_i x_i p_i`` (Amit, Gutfreund & Sompolinsky 1985), row by row: 1 is perfect."""
    return jnp.mean(jnp.asarray(x, jnp.float32) * jnp.asarray(patterns, jnp.float32), axis=-1)


@functools.partial(jax.jit, static_argnames=('num_patterns', 'num_units'))
def random_patterns(key: jax.Array, num_patterns: int, num_units: int) -> jax.Array:
    """``[P, N]`` independent, unbiased ``±1`` patterns."""
    return jnp.where(jax.random.bernoulli(key, 0.5, (num_patterns, num_units)), 1.0, -1.0)


def capacity_study(key: jax.Array, num_units: int, loads: Sequence[float], num_trials: int = 4,
                   flip_fraction: float = 0.0, num_sweeps: int = 8,
                   min_overlap: float = 0.95) -> dict[str, np.ndarray]:
    """Recall rate against the load ``alpha = P/N`` (Amit, Gutfreund & Sompolinsky 1985: retrieval breaks
    down near ``alpha_c ~ 0.138``).

    For each load, ``P = round(alpha N)`` random patterns are stored (``hebbian_weights``), each pattern is
    corrupted by ``flip_fraction`` and recalled asynchronously for ``num_sweeps`` sweeps; a pattern counts as
    recalled when the final overlap is at least ``min_overlap``. Returns numpy arrays over loads:
    ``load``, ``num_patterns``, ``recall_rate`` (fraction recalled), ``exact_rate`` (fraction recalled with
    no error) and ``mean_overlap``, averaged over ``num_trials`` independent pattern sets.
    """
    require(num_units >= 2, f"num_units must be >= 2, got {num_units}")
    require(len(loads) > 0 and all(a > 0 for a in loads), f"loads must be positive P/N values, got {loads}")
    require(0.0 <= flip_fraction < 0.5, f"flip_fraction must be in [0, 0.5), got {flip_fraction}")
    rows = []
    for i, alpha in enumerate(loads):
        p = max(1, int(round(alpha * num_units)))
        rec, exact, ov = [], [], []
        for t in range(num_trials):
            k_pat, k_flip, k_rec = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, i), t), 3)
            pats = random_patterns(k_pat, p, num_units)
            w = hebbian_weights(pats)
            final, _ = async_recall(w, corrupt_patterns(k_flip, pats, flip_fraction), k_rec, num_sweeps)
            m = np.asarray(overlap(final, pats))
            rec.append(np.mean(m >= min_overlap))
            exact.append(np.mean(m >= 1.0 - 1e-6))
            ov.append(np.mean(m))
        rows.append((alpha, p, np.mean(rec), np.mean(exact), np.mean(ov)))
    cols = np.asarray(rows, np.float64).T
    return {"load": cols[0], "num_patterns": cols[1].astype(np.int64), "recall_rate": cols[2],
            "exact_rate": cols[3], "mean_overlap": cols[4]}

