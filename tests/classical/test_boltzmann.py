import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.classical import boltzmann as bm
from gm_jax.core.errors import ConfigError


def _model(n: int, seed: int = 0, scale: float = 0.8):
    w = bm.symmetric_weights(jax.random.key(seed), n, scale)
    b = 0.5 * jax.random.normal(jax.random.key(seed + 100), (n,))
    return w, b


def _brute_force(w, b, temperature=1.0):
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    n = b.shape[0]
    states = np.array([s[::-1] for s in itertools.product([0, 1], repeat=n)], np.float64)
    energy = -0.5 * np.einsum("si,ij,sj->s", states, w, states) - states @ b
    logits = -energy / temperature
    log_z = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
    index = (states.astype(int) << np.arange(n)).sum(1)
    probs = np.zeros(2 ** n)
    probs[index] = np.exp(logits - log_z)
    return log_z, probs


def test_exact_enumeration_matches_numpy():
    w, b = _model(5)
    for t in (1.0, 2.5):
        log_z, probs = _brute_force(w, b, t)
        np.testing.assert_allclose(float(bm.exact_log_partition(w, b, t)), log_z, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(bm.exact_distribution(w, b, t)), probs, atol=1e-6)


def test_conditional_is_ratio_of_joint_probabilities():
    w, b = _model(4, seed=1)
    _, probs = _brute_force(w, b, 1.5)
    x = np.array([1.0, 0.0, 1.0, 1.0])
    for i in range(4):
        on, off = x.copy(), x.copy()
        on[i], off[i] = 1.0, 0.0
        p_on = probs[int(bm.state_index(jnp.asarray(on)))]
        p_off = probs[int(bm.state_index(jnp.asarray(off)))]
        got = float(bm.unit_on_probability(w, b, jnp.asarray(x), i, 1.5))
        np.testing.assert_allclose(got, p_on / (p_on + p_off), rtol=1e-5)


def test_gibbs_chain_matches_boltzmann_distribution():
    w, b = _model(4, seed=2)
    _, probs = _brute_force(w, b)
    states = bm.gibbs_chain(w, b, jax.random.key(3), jnp.zeros(4), 20000)
    counts = np.bincount(np.asarray(bm.state_index(states[500:])), minlength=16)
    empirical = counts / counts.sum()
    tv = 0.5 * np.abs(empirical - probs).sum()
    assert tv < 0.03, tv


def test_zero_temperature_limit_is_hopfield_dynamics():
    w, b = _model(8, seed=4)
    x0 = jax.random.bernoulli(jax.random.key(5), 0.5, (16, 8)).astype(jnp.float32)
    out = bm.temperature_contrast(w, b, jax.random.key(6), x0, jnp.array([1e-4, 5.0]), 4)
    agreement = np.asarray(out["agreement"])
    assert agreement[0] == 1.0
    assert agreement[1] < 0.9
    assert np.all(np.diff(np.asarray(out["deterministic_energy"])) <= 1e-5)
    assert out["energy"].shape == (2, 4)


def test_bad_input_raises_config_error():
    with pytest.raises(ConfigError):
        bm.all_states(25)
    with pytest.raises(ConfigError):
        bm.all_states(0)
