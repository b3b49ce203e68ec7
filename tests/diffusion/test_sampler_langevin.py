"""Annealed Langevin dynamics with its default step scaled to the grid's smallest noise level (Song & Ermon
2020, technique 4: ε_i = ε σ_i²/σ_L², ε = 0.2 σ_L²): one step by hand, the explicit ε unchanged, and
convergence with the exact score on a DDPM-style discrete grid and on EDM's grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.diffusion import samplers as P
from gm_jax.diffusion import schedules as S
from gm_jax.metrics.toy import sliced_wasserstein
from tests.diffusion.test_sampler_multistep import EDM, MAX_STEPS, MIX_D, W2_TRUTH, X_IN, _opts, _runner

DISCRETE = S.discrete_schedule("linear", 1000)


@pytest.mark.parametrize("step_lr", [0.0, 3e-3])
def test_one_langevin_step_by_hand(step_lr):
    """x ← x + (a/2) ∇log p + √a z with a = ε (σ̃_0/σ̃_L)² and ε = step_lr, or 0.2 σ̃_L² when step_lr = 0."""
    grid = S.make_grid("edm", EDM, jnp.int32(5), MAX_STEPS, sigma_max=4.0)
    x = X_IN * 4.0
    chain = P.get_sampler("annealed_langevin").chain(MIX_D, jax.random.key(4), jnp.asarray(x), grid, 0,
                                                      **_opts(step_lr=step_lr, n_inner=1, denoise=0))
    got, nfe, _ = chain.step(chain.init, jnp.int32(0))
    r0, r_last = float(grid.sigma[0]), float(grid.sigma[4])
    eps = step_lr if step_lr > 0 else 0.2 * r_last**2
    a = eps * (r0 / r_last) ** 2
    x0 = np.asarray(MIX_D(jnp.asarray(x), r0, 1.0, r0), np.float64)
    score = (x0 - x) / r0**2  # Tweedie: ∇log p = (α x̂_0 − x)/σ²
    z = np.asarray(P._noise(jax.random.key(4), jnp.int32(0), jnp.asarray(x), 0, 0), np.float64)
    want = x + 0.5 * a * score + np.sqrt(a) * z
    assert int(nfe) == 1
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4, atol=1e-4)
    if step_lr == 0:
        np.testing.assert_allclose(a, 0.2 * r0**2, rtol=1e-6)  # the step is 0.2 σ̃_i² at every level


def test_default_step_is_grid_scaled():
    assert P.get_sampler("annealed_langevin").defaults()["step_lr"] == 0.0
    assert P.LANGEVIN_STEP_RATIO * 0.01**2 == pytest.approx(2e-5)  # NCSN's ε at its σ_L = 0.01


@pytest.mark.parametrize("grid_name,process", [("discrete", DISCRETE), ("edm", EDM)])
def test_converges_on_two_grids(grid_name, process):
    """Sliced W2 to exact draws falls with the number of levels on both grids (5 inner steps per level,
    the default step): measured discrete 0.58 / 0.36 / 0.16, EDM 4.3 / 0.39 / 0.21 for 10 / 40 / 160 levels
    (the EDM grid's 10 levels span σ 40 → 0.002, too coarse to anneal)."""
    run = _runner("annealed_langevin", MIX_D)
    kw = {"sigma_max": 40.0} if grid_name == "edm" else {}
    dist = []
    for n in (10, 40, 160):
        grid = S.make_grid(grid_name, process, jnp.int32(n), 160, **kw)
        x_T = P.prior_sample(jax.random.key(1), grid, (2000, 2))
        x, info = run(jax.random.key(0), x_T, grid, {}, jnp.int32(0))
        assert int(info["nfe"]) == P.get_sampler("annealed_langevin").expected_nfe(n) == 5 * n + 1
        dist.append(float(sliced_wasserstein(x, W2_TRUTH, jax.random.key(3), 128)))
    assert dist[0] > 1.2 * dist[1] > 1.2**2 * dist[2], dist
    assert dist[2] < 0.25, dist
