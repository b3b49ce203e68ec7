"""The 32-D sampler study: the test mixture, the starting laws, NFE budgets, and a small end-to-end run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.bench import mixture_study as ms
from gm_jax.bench.exact_w2 import sliced_w2_to_mixture, uniform_directions
from gm_jax.diffusion import gmm as gmm_lib
from gm_jax.diffusion.schedules import Grid


def test_mixture_has_the_stated_spectrum_weights_and_seed():
    g = ms.mixture_32d()
    assert g.means.shape == (8, 32) and g.covs.shape == (8, 32, 32)
    np.testing.assert_allclose(float(g.weights.sum()), 1.0, atol=1e-6)
    lam = np.geomspace(0.005, 0.1, 32)
    for c in np.asarray(g.covs, np.float64):
        np.testing.assert_allclose(np.linalg.eigvalsh(c), lam, rtol=1e-4)  # a rotation keeps the eigenvalues
    np.testing.assert_array_equal(np.asarray(ms.mixture_32d().means), np.asarray(g.means))
    assert not np.array_equal(np.asarray(ms.mixture_32d(seed=1).means), np.asarray(g.means))


def _grid(alpha: float, sigma: float) -> Grid:
    one = lambda a, b: jnp.asarray([a, b], jnp.float32)
    return Grid(t=one(1, 0), time=one(1, 0), alpha=one(alpha, 1), sigma=one(sigma, 0), f=one(0, 0), g2=one(0, 0),
                n_steps=jnp.int32(1))


@pytest.fixture(scope="module")
def starts():
    g = ms.mixture_32d()
    grid = _grid(0.96, 0.28)
    draw = jax.jit(lambda prior, key: ms.start_sample(g, prior, key, grid, 20000), static_argnums=0)
    return g, {p: np.asarray(draw(p, jax.random.key(0)), np.float64) for p in ms.PRIORS}


def test_starting_laws_have_the_moments_of_the_noised_mixture(starts):
    g, x = starts
    mean, cov = (np.asarray(a, np.float64) for a in gmm_lib.moments(g))
    want_mean, want_cov = 0.96 * mean, 0.96**2 * cov + 0.28**2 * np.eye(32)
    for prior in ("moment_matched", "exact"):
        se = np.sqrt(np.diag(want_cov) / len(x[prior]))
        assert np.max(np.abs(x[prior].mean(0) - want_mean) / se) < 5
        np.testing.assert_allclose(np.trace(np.cov(x[prior].T)), np.trace(want_cov), rtol=0.02)
    np.testing.assert_allclose(x["gaussian"].std(), 0.28, rtol=0.01)
    assert np.max(np.abs(x["gaussian"].mean(0))) < 5 * 0.28 / np.sqrt(20000)


def test_only_the_exact_start_is_the_noised_mixture(starts):
    g, x = starts
    noised = gmm_lib.noised(g, 0.96, 0.28)
    w, mu, cov = (np.asarray(a, np.float64) for a in (noised.weights, noised.means, noised.covs))
    dirs = uniform_directions(16, 32, seed=1)
    d = {p: sliced_w2_to_mixture(x[p], w, mu, cov, dirs) for p in ms.PRIORS}
    # Same two moments, but the Gaussian misses the mixture's shape: several times the exact draws' distance.
    assert d["exact"] < 0.015 and d["moment_matched"] > 4 * d["exact"] and d["gaussian"] > d["moment_matched"]


def test_steps_for_budget_uses_each_samplers_nfe():
    assert ms.steps_for_budget("euler", 20) == 20
    assert ms.steps_for_budget("heun", 20) == 10  # 2N − 1 = 19 calls
    assert ms.steps_for_budget("heun", 1) == 1
    assert ms.steps_for_budget("annealed_langevin", 5) is None  # one step: 5 inner calls + the final denoising


def test_ratio_standard_error_by_the_delta_method():
    out = ms.ratio_to_floor({"mean": 2.0, "se": 0.2}, {"mean": 1.0, "se": 0.05})
    assert out["ratio"] == 2.0
    np.testing.assert_allclose(out["ratio_se"], 2.0 * np.hypot(0.1, 0.05))
    assert ms.ratio_to_floor({"mean": 2.0, "se": None}, {"mean": 1.0, "se": 0.05})["ratio_se"] is None


def test_small_study_improves_with_nfe_and_reaches_the_floor():
    cfg = ms.StudyConfig(num=2000, seeds=2, projections=16, budgets=(5, 50), max_steps=50)
    res = ms.distance_vs_nfe(["euler", "dpm_solver_2m"], cfg=cfg)
    assert res["dim"] == 32 and res["floor"]["mean"] > 0 and len(res["floor"]["values"]) == 2
    by = {(r["sampler"], r["nfe"]): r["ratio"] for r in res["records"]}
    assert set(by) == {("euler", 5), ("euler", 50), ("dpm_solver_2m", 5), ("dpm_solver_2m", 50)}
    assert by[("euler", 5)] > 3 * by[("euler", 50)]  # five Euler steps are far from the law
    assert by[("dpm_solver_2m", 50)] < 1.6  # converged: within the Monte-Carlo noise of exact draws
