"""Fully connected binary Boltzmann machine (Ackley, Hinton & Sejnowski 1985).

Units are ``{0, 1}``; ``W`` is symmetric with a zero diagonal and ``b`` are the biases. The model is
``P(x) = exp(-E(x)/T) / Z`` with ``E(x) = -1/2 x^T W x - b^T x``. Gibbs sampling visits the units in order
(sequential sweeps); as the temperature ``T -> 0`` each Gibbs update becomes the deterministic threshold
update of a Hopfield network.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gm_jax.core.errors import require

MAX_ENUMERATION_UNITS = 20


@functools.partial(jax.jit, static_argnames=('num_units',))
def symmetric_weights(key: jax.Array, num_units: int, scale: float = 1.0) -> jax.Array:
    """Random symmetric ``[n, n]`` weights with zero diagonal, entries ``~ N(0, scale^2)``."""
    a = scale * jax.random.normal(key, (num_units, num_units))
    w = jnp.triu(a, 1)
    return w + w.T


def boltzmann_energy(weights: jax.Array, bias: jax.Array, x: jax.Array) -> jax.Array:
    """``E(x) = -1/2 x^T W x - b^T x`` (Ackley, Hinton & Sejnowski 1985, eq. 1) of ``x [..., n]``."""
    x = jnp.asarray(x, jnp.float32)
    return -0.5 * jnp.einsum("...i,ij,...j->...", x, weights, x) - x @ bias


def unit_on_probability(weights: jax.Array, bias: jax.Array, x: jax.Array, unit: int | jax.Array,
                        temperature: float | jax.Array = 1.0) -> jax.Array:
    """``P(x_i = 1 | rest) = sigmoid((sum_j w_ij x_j + b_i) / T)`` (Ackley et al. 1985, eq. 4)."""
    field = weights[unit] @ x + bias[unit]
    return jax.nn.sigmoid(field / temperature)


def gibbs_sweep(weights: jax.Array, bias: jax.Array, x: jax.Array, key: jax.Array,
                temperature: float | jax.Array = 1.0) -> jax.Array:
    """One sequential Gibbs sweep over units ``0..n-1`` of one state ``x [n]``: each unit is resampled from
    ``unit_on_probability`` given the current values of all the others."""
    n = x.shape[-1]
    u = jax.random.uniform(key, (n,))

    def update(i: jax.Array, s: jax.Array) -> jax.Array:
        p = unit_on_probability(weights, bias, s, i, temperature)
        return s.at[i].set((u[i] < p).astype(s.dtype))

    return jax.lax.fori_loop(0, n, update, jnp.asarray(x, jnp.float32))


@functools.partial(jax.jit, static_argnames=("num_sweeps",))
def gibbs_chain(weights: jax.Array, bias: jax.Array, key: jax.Array, x0: jax.Array, num_sweeps: int,
                temperature: float | jax.Array = 1.0) -> jax.Array:
    """A Gibbs chain of ``num_sweeps`` sequential sweeps from ``x0 [n]`` as one ``lax.scan``; returns the
    state after every sweep, ``[num_sweeps, n]`` (the chain's stationary law is ``exp(-E/T)/Z``)."""

    def body(s: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = gibbs_sweep(weights, bias, s, jax.random.fold_in(key, i), temperature)
        return s, s

    _, states = jax.lax.scan(body, jnp.asarray(x0, jnp.float32), jnp.arange(num_sweeps))
    return states


def threshold_sweep(weights: jax.Array, bias: jax.Array, x: jax.Array) -> jax.Array:
    """The ``T -> 0`` limit of ``gibbs_sweep``: sequential Hopfield updates ``x_i <- 1[sum_j w_ij x_j + b_i
    > 0]`` (Hopfield 1982 in ``{0, 1}`` coding); a unit with zero field keeps its value."""

    def update(i: jax.Array, s: jax.Array) -> jax.Array:
        field = weights[i] @ s + bias[i]
        return s.at[i].set(jnp.where(field > 0, 1.0, jnp.where(field < 0, 0.0, s[i])))

    return jax.lax.fori_loop(0, x.shape[-1], update, jnp.asarray(x, jnp.float32))


def all_states(num_units: int) -> jax.Array:
    """All ``2^n`` binary states ``[2^n, n]`` (row ``k`` is the binary expansion of ``k``, bit 0 first)."""
    require(0 < num_units <= MAX_ENUMERATION_UNITS,
            f"enumeration needs 1 <= num_units <= {MAX_ENUMERATION_UNITS}, got {num_units}")
    k = jnp.arange(2 ** num_units)[:, None]
    return ((k >> jnp.arange(num_units)[None, :]) & 1).astype(jnp.float32)


@jax.jit
def exact_log_partition(weights: jax.Array, bias: jax.Array,
                        temperature: float | jax.Array = 1.0) -> jax.Array:
    """``log Z = log sum_x exp(-E(x)/T)`` by enumerating all ``2^n`` states (small ``n`` only)."""
    states = all_states(bias.shape[-1])
    return jax.nn.logsumexp(-boltzmann_energy(weights, bias, states) / temperature)


@jax.jit
def exact_distribution(weights: jax.Array, bias: jax.Array,
                       temperature: float | jax.Array = 1.0) -> jax.Array:
    """Boltzmann distribution ``P(x) = exp(-E(x)/T) / Z`` over ``all_states(n)``, ``[2^n]``."""
    states = all_states(bias.shape[-1])
    return jax.nn.softmax(-boltzmann_energy(weights, bias, states) / temperature)


def state_index(x: jax.Array) -> jax.Array:
    """Index of binary states ``x [..., n]`` in ``all_states(n)``."""
    n = x.shape[-1]
    return jnp.sum(jnp.asarray(x, jnp.int32) << jnp.arange(n), axis=-1)


@functools.partial(jax.jit, static_argnames=("num_sweeps",))
def temperature_contrast(weights: jax.Array, bias: jax.Array, key: jax.Array, x0: jax.Array,
                         temperatures: jax.Array, num_sweeps: int) -> dict[str, jax.Array]:
    """Deterministic against stochastic dynamics: from the same states ``x0 [B, n]`` run ``num_sweeps``
    Gibbs sweeps at each temperature and ``num_sweeps`` zero-temperature ``threshold_sweep``s.

    Returns ``energy`` ``[len(T), num_sweeps]`` (mean energy after each Gibbs sweep),
    ``deterministic_energy`` ``[num_sweeps]`` (Hopfield dynamics, never increasing) and ``agreement``
    ``[len(T)]`` (fraction of units whose final Gibbs state equals the final Hopfield state); as
    ``T -> 0`` the agreement tends to 1 (Ackley et al. 1985, sec. 2: T = 0 is the Hopfield net).
    """
    x0 = jnp.asarray(x0, jnp.float32)
    temperatures = jnp.asarray(temperatures, jnp.float32)
    chain_keys = jax.random.split(key, x0.shape[0])

    def det_body(s: jax.Array, _: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = jax.vmap(lambda v: threshold_sweep(weights, bias, v))(s)
        return s, jnp.mean(boltzmann_energy(weights, bias, s))

    det_final, det_energy = jax.lax.scan(det_body, x0, jnp.arange(num_sweeps))

    def at_temperature(t: jax.Array) -> tuple[jax.Array, jax.Array]:
        chains = jax.vmap(lambda k, v: gibbs_chain(weights, bias, k, v, num_sweeps, t))(chain_keys, x0)
        energy = jnp.mean(boltzmann_energy(weights, bias, chains), axis=0)
        return energy, jnp.mean(chains[:, -1] == det_final)

    energy, agreement = jax.lax.map(at_temperature, temperatures)
    return {"energy": energy, "deterministic_energy": det_energy, "agreement": agreement}
