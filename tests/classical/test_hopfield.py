import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.classical import hopfield as hp
from gm_jax.core.errors import ConfigError


def _patterns(seed: int, p: int, n: int) -> jnp.ndarray:
    return hp.random_patterns(jax.random.key(seed), p, n)


def test_hebbian_weights_match_outer_product_rule():
    pats = np.asarray(_patterns(0, 4, 12))
    w = np.asarray(hp.hebbian_weights(jnp.asarray(pats)))
    ref = sum(np.outer(p, p) for p in pats) / 12.0
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(w, ref, atol=1e-6)
    x = pats[0] * -1.0
    np.testing.assert_allclose(float(hp.hopfield_energy(jnp.asarray(w), jnp.asarray(x))), -0.5 * x @ ref @ x,
                               rtol=1e-5)


def test_stored_patterns_are_fixed_points_below_capacity():
    pats = _patterns(1, 5, 100)
    w = hp.hebbian_weights(pats)
    np.testing.assert_array_equal(np.asarray(hp.sync_update(w, pats)), np.asarray(pats))
    final, _ = hp.async_recall(w, pats, jax.random.key(2), 5)
    np.testing.assert_array_equal(np.asarray(final), np.asarray(pats))


def test_energy_never_increases_under_asynchronous_updates():
    n = 40
    pats = _patterns(3, 12, n)  # above capacity: the dynamics do real work
    w = hp.hebbian_weights(pats)
    w_np = np.asarray(w)
    b = np.asarray(0.1 * jax.random.normal(jax.random.key(4), (n,)))
    x = np.asarray(jnp.where(jax.random.bernoulli(jax.random.key(5), 0.5, (n,)), 1.0, -1.0))
    update = jax.jit(hp.async_update_unit)
    order = np.random.default_rng(0).integers(0, n, size=6 * n)
    energy = -0.5 * x @ w_np @ x - b @ x
    changes = 0
    for i in order:
        new = np.asarray(update(w, jnp.asarray(x), int(i), jnp.asarray(b)))
        new_energy = -0.5 * new @ w_np @ new - b @ new
        assert new_energy <= energy + 1e-5
        changes += int(np.any(new != x))
        x, energy = new, new_energy
    assert changes > 0
    x0 = jnp.where(jax.random.bernoulli(jax.random.key(6), 0.5, (3, n)), 1.0, -1.0)
    final, energies = hp.async_recall(w, x0, jax.random.key(7), 5, jnp.asarray(b))
    e = np.asarray(energies)
    assert e.shape == (5, 3)
    assert np.all(np.diff(e, axis=0) <= 1e-5)
    f = np.asarray(final)
    np.testing.assert_allclose(e[-1], [-0.5 * r @ w_np @ r - b @ r for r in f], rtol=1e-5, atol=1e-5)


def test_corrupted_patterns_are_recalled():
    pats = _patterns(8, 5, 100)
    w = hp.hebbian_weights(pats)
    noisy = hp.corrupt_patterns(jax.random.key(9), pats, 0.15)
    flips = np.sum(np.asarray(noisy) != np.asarray(pats), axis=1)
    np.testing.assert_array_equal(flips, 15)
    final, _ = hp.async_recall(w, noisy, jax.random.key(10), 5)
    np.testing.assert_allclose(np.asarray(hp.overlap(final, pats)), 1.0)
    np.testing.assert_allclose(np.asarray(hp.overlap(hp.sync_recall(w, noisy, 5), pats)), 1.0)


def test_capacity_study_separates_low_and_high_load():
    out = hp.capacity_study(jax.random.key(11), 100, [0.05, 0.3], num_trials=2, flip_fraction=0.05,
                            num_sweeps=5)
    np.testing.assert_array_equal(out["num_patterns"], [5, 30])
    assert out["recall_rate"][0] >= 0.9
    assert out["recall_rate"][1] <= 0.5
    assert out["mean_overlap"][0] > out["mean_overlap"][1]


def test_bad_input_raises_config_error():
    with pytest.raises(ConfigError):
        hp.hebbian_weights(jnp.ones((5,)))
    with pytest.raises(ConfigError):
        hp.capacity_study(jax.random.key(0), 50, [0.1], flip_fraction=0.7)


def _correlated_patterns(p: int, n: int, seed: int = 0) -> np.ndarray:
    """Sparse ``±1`` patterns (80 % of units at -1, like binarized digits): mean overlap ~0.36."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((p, n)) < 0.2, 1.0, -1.0).astype(np.float32)


def test_projection_rule_stores_correlated_patterns_that_hebbian_cannot():
    pats = jnp.asarray(_correlated_patterns(6, 200))
    hebb, proj = hp.hebbian_weights(pats), hp.projection_weights(pats)
    assert not np.array_equal(np.asarray(hp.sync_update(hebb, pats)), np.asarray(pats))
    np.testing.assert_array_equal(np.asarray(hp.sync_update(proj, pats)), np.asarray(pats))
    w = np.asarray(proj)
    np.testing.assert_allclose(w, w.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(w), 0.0)
    # orthogonal patterns (rows of a Hadamard matrix): the projection rule is the Hebbian rule
    h = np.array([[1.0]])
    for _ in range(4):
        h = np.block([[h, h], [h, -h]])
    np.testing.assert_allclose(np.asarray(hp.projection_weights(jnp.asarray(h[:5]))),
                               np.asarray(hp.hebbian_weights(jnp.asarray(h[:5]))), atol=1e-5)
    with pytest.raises(ConfigError, match="P < N"):
        hp.projection_weights(jnp.ones((4, 4)))
