import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.classical import rbm
from gm_jax.core.errors import ConfigError


def _states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def _random_rbm(v: int, h: int, seed: int = 0, scale: float = 1.0) -> dict:
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return {"w": scale * jax.random.normal(k1, (v, h)), "b": 0.5 * jax.random.normal(k2, (v,)),
            "c": 0.5 * jax.random.normal(k3, (h,))}


def _numpy_log_z(params: dict) -> float:
    w, b, c = (np.asarray(params[k], np.float64) for k in ("w", "b", "c"))
    vs, hs = _states(w.shape[0]), _states(w.shape[1])
    neg_e = np.einsum("vi,ij,hj->vh", vs, w, hs) + (vs @ b)[:, None] + (hs @ c)[None, :]
    m = neg_e.max()
    return float(np.log(np.exp(neg_e - m).sum()) + m)


def _data() -> np.ndarray:
    rng = np.random.default_rng(0)
    protos = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], np.float32)
    x = protos[rng.integers(0, 2, 40)]
    flips = rng.random(x.shape) < 0.05
    return np.where(flips, 1 - x, x).astype(np.float32)


def test_free_energy_matches_brute_force_marginalization():
    params = _random_rbm(5, 3, seed=1)
    w, b, c = (np.asarray(params[k], np.float64) for k in ("w", "b", "c"))
    hs = _states(3)
    for v in _states(5)[::3]:
        neg_e = v @ w @ hs.T + v @ b + hs @ c
        ref = -np.log(np.exp(neg_e).sum())
        np.testing.assert_allclose(float(rbm.free_energy(params, jnp.asarray(v))), ref, rtol=1e-5, atol=1e-5)
    e = float(rbm.rbm_energy(params, jnp.asarray(_states(5)[7]), jnp.asarray(hs[5])))
    np.testing.assert_allclose(e, -(_states(5)[7] @ w @ hs[5] + _states(5)[7] @ b + hs[5] @ c), rtol=1e-5)


def test_exact_log_partition_over_either_layer():
    for v, h in ((6, 4), (3, 7)):
        params = _random_rbm(v, h, seed=v)
        np.testing.assert_allclose(float(rbm.exact_log_partition(params)), _numpy_log_z(params), rtol=1e-5)


def test_ais_matches_exact_log_partition_within_error_bars():
    params = _random_rbm(6, 4, seed=2)
    exact = _numpy_log_z(params)
    base = rbm.base_rate_visible_bias(jnp.asarray(_data()))
    log_z, stderr = rbm.ais_log_partition(params, jax.random.key(3), base, num_chains=256, num_betas=400)
    assert 0.0 < float(stderr) < 0.1
    assert abs(float(log_z) - exact) < 4.0 * float(stderr) + 1e-3, (float(log_z), exact, float(stderr))


def test_block_gibbs_samples_follow_the_model_marginal():
    params = _random_rbm(4, 3, seed=4)
    w, b, c = (np.asarray(params[k], np.float64) for k in ("w", "b", "c"))
    vs = _states(4)
    log_p = vs @ b + np.log1p(np.exp(vs @ w + c)).sum(1)
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    samples, _ = rbm.sample_rbm(params, jax.random.key(5), 4000, 30)
    idx = np.asarray(samples).astype(int) @ (2 ** np.arange(3, -1, -1))
    empirical = np.bincount(idx, minlength=16) / 4000
    assert 0.5 * np.abs(empirical - p).sum() < 0.04


@pytest.mark.parametrize("persistent", [False, True])
def test_contrastive_divergence_lowers_exact_nll(persistent):
    data = jnp.asarray(_data())
    params = rbm.rbm_init(jax.random.key(6), 6, 4, 0.01, rbm.base_rate_visible_bias(data))
    cd = rbm.contrastive_divergence(1, 0.1, 1e-4, 0.5, persistent)
    state = cd.init(params, jax.random.key(7), 40)

    def nll(p):
        return float(rbm.negative_log_likelihood(p, data, rbm.exact_log_partition(p)))

    start = nll(params)

    def body(carry, i):
        p, s = carry
        p, s, _ = cd.step(p, s, data, jax.random.fold_in(jax.random.key(8), i))
        return (p, s), None

    (params, state), _ = jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(300)))((params, state))
    end = nll(params)
    assert end < start - 0.5, (start, end)
    if persistent:
        assert not np.array_equal(np.asarray(state.chains), np.asarray(cd.init(params, jax.random.key(7), 40)
                                                                       .chains))


def test_filters_as_images_and_bad_input():
    params = _random_rbm(12, 5)
    f = np.asarray(rbm.filters_as_images(params, (3, 4)))
    assert f.shape == (5, 3, 4)
    np.testing.assert_allclose(f.min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(f.max(axis=(1, 2)), 1.0, atol=1e-6)
    col = np.asarray(params["w"][:, 2])
    np.testing.assert_allclose(f[2].ravel(), (col - col.min()) / np.ptp(col), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError):
        rbm.filters_as_images(params, (5, 5))
    with pytest.raises(ConfigError):
        rbm.ais_log_partition(params, jax.random.key(0), jnp.zeros(12), num_chains=1)
    with pytest.raises(ConfigError):
        rbm.exact_log_partition(_random_rbm(30, 30))


def test_default_update_is_hintons_momentum_rule():
    """``vel <- m vel + lr (g - wd W)``, ``params += vel`` (Hinton 2010, secs. 9-10), checked by hand."""
    data = jnp.asarray(_data()[:8])
    params = _random_rbm(6, 3, seed=9, scale=0.1)
    lr, wd, mom = 0.1, 0.01, 0.5
    cd = rbm.contrastive_divergence(2, lr, wd, mom, persistent=False)
    state = cd.init(params, jax.random.key(0), 4)
    ref = {k: np.asarray(v, np.float64) for k, v in params.items()}
    vel = {k: np.zeros_like(v) for k, v in ref.items()}
    step = jax.jit(cd.step)
    for i in range(2):
        key = jax.random.key(10 + i)
        v_model, _ = rbm.gibbs_chain(params, key, data, 2)
        g = {k: np.asarray(v, np.float64) for k, v in rbm.cd_gradient(params, data, v_model).items()}
        g["w"] = g["w"] - wd * np.asarray(params["w"], np.float64)
        vel = {k: mom * vel[k] + lr * g[k] for k in vel}
        ref = {k: ref[k] + vel[k] for k in ref}
        params, state, _ = step(params, state, data, key)
        for k in ref:
            np.testing.assert_allclose(np.asarray(params[k]), ref[k], rtol=1e-4, atol=1e-5)


def test_ais_schedules():
    for n in (4, 100, 14500):
        for schedule in ("linear", "sm08"):
            b = np.asarray(rbm.ais_betas(n, schedule))
            assert b.shape == (n,) and b[0] == 0.0 and b[-1] == 1.0 and np.all(np.diff(b) > 0)
    b = np.asarray(rbm.ais_betas(14500, "sm08"))  # Salakhutdinov & Murray (2008): 500, 4000, 10000 points
    assert np.sum(b < 0.5) == 500 and np.sum((b >= 0.5) & (b < 0.9)) == 4000 and np.sum(b >= 0.9) == 10000
    with pytest.raises(ConfigError, match="schedule"):
        rbm.ais_betas(10, "geometric")
