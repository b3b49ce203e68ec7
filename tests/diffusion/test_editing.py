"""Editing on the exact Gaussian-mixture test bed: SDEdit (strength 1 is sampling from the prior, small
strengths stay close to the input, distance monotone in the strength, no recompilation), DDIM inversion and
regeneration (reconstruction error decreasing with the steps), a class swap with a labelled two-component
mixture, the grid tail, and spherical interpolation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.diffusion import editing as E
from gm_jax.diffusion import gmm as G
from gm_jax.diffusion import samplers as P
from gm_jax.diffusion import schedules as S
from gm_jax.metrics.toy import sliced_wasserstein

SCHEDULE = S.discrete_schedule("linear", 1000)
MIX = G.gaussian_mixture(np.array([0.3, 0.7]), np.array([[-2.0, 0.0], [2.0, 1.0]]),
                         np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.5]]]))
# two well separated labelled components: label k's conditional denoiser is the exact denoiser of component k
MEANS = np.array([[-3.0, 0.0], [3.0, 0.5]])
COVS = np.array([[[0.4, 0.1], [0.1, 0.6]], [[0.5, -0.2], [-0.2, 0.3]]])
COMPONENTS = [G.gaussian_mixture(np.ones(1), MEANS[k:k + 1], COVS[k:k + 1]) for k in range(2)]
_DENOISERS = [G.exact_denoiser(c) for c in COMPONENTS]


def conditional(x, t, alpha, sigma, label):
    return jnp.where(jnp.asarray(label) == 1, _DENOISERS[1](x, t, alpha, sigma), _DENOISERS[0](x, t, alpha, sigma))


def _sw(a, b):
    return float(sliced_wasserstein(jnp.asarray(a), jnp.asarray(b), jax.random.key(3), 128))


def _component(x):
    logp = jnp.stack([G.log_prob(c, jnp.asarray(x)) for c in COMPONENTS], -1)
    return np.asarray(jnp.argmax(logp, -1))


def test_tail_grid_and_strength_start():
    grid = S.make_grid("discrete", SCHEDULE, 10, 16)
    tail = E.tail_grid(grid, 4)
    assert int(tail.n_steps) == 6 and tail.max_steps == grid.max_steps
    np.testing.assert_array_equal(np.asarray(tail.alpha[:7]), np.asarray(grid.alpha[4:11]))
    np.testing.assert_array_equal(np.asarray(tail.t[:6]), np.asarray(grid.t[4:10]))
    assert float(tail.sigma[6]) == 0.0 and float(tail.alpha[6]) == 1.0 and np.all(np.asarray(tail.sigma[6:]) == 0)
    starts = [int(E.strength_start(grid, s)) for s in (1.0, 0.55, 0.3, 0.01)]
    assert starts == [0, 4, 7, 9]
    with pytest.raises(ConfigError, match="--strength must be in") as err:
        E.strength_start(grid, 0.0)
    assert "\n" not in str(err.value)


def test_sdedit_at_strength_one_samples_the_prior():
    """Strength 1 starts at the first grid point (x_T ≈ σ_0 z, α_0 ≈ 0.006): the output has the law of the
    plain sampler's (sliced W2 between them below the exact-vs-exact floor) and of the mixture."""
    num = 4000
    grid = S.make_grid("discrete", SCHEDULE, 200, 200)
    den = G.exact_denoiser(MIX)
    x = G.sample(MIX, jax.random.key(11), num)
    out, info = E.sdedit("ddpm", den, jax.random.key(0), x, grid, 1.0)
    assert int(info["nfe"]) == 200 and int(info["start"]) == 0
    plain, _ = P.get_sampler("ddpm")(den, jax.random.key(0), P.prior_sample(jax.random.key(1), grid, x.shape), grid)
    prior, prior2 = G.sample(MIX, jax.random.key(12), num), G.sample(MIX, jax.random.key(13), num)
    floor, to_prior, to_plain = _sw(prior, prior2), _sw(out, prior), _sw(out, plain)
    msg = f"sliced W2: sdedit-prior {to_prior:.3f}, plain-prior {_sw(plain, prior):.3f}, sdedit-plain " \
          f"{to_plain:.3f}, prior-prior {floor:.3f}"
    assert to_plain < floor and to_prior < floor + 0.04, msg


def test_sdedit_distance_grows_with_strength_and_does_not_recompile():
    """Mean ‖SDEdit(x) − x‖ strictly increasing in the strength; small at strength 0.025 (one step from
    σ ≈ 0.07); one compilation for every strength (an array)."""
    grid = S.make_grid("discrete", SCHEDULE, 40, 64)
    den = G.exact_denoiser(MIX)
    x = G.sample(MIX, jax.random.key(11), 1000)
    run = jax.jit(lambda s: E.sdedit("ddim", den, jax.random.key(0), x, grid, s, eta=jnp.float32(1.0)))
    dist, nfe = [], []
    for s in (0.025, 0.05, 0.1, 0.2, 0.4, 0.7):
        out, info = run(jnp.float32(s))
        dist.append(float(jnp.mean(jnp.linalg.norm(out - x, axis=-1))))
        nfe.append(int(info["nfe"]))
    assert nfe == [1, 2, 4, 8, 16, 28]
    assert all(a < b for a, b in zip(dist, dist[1:], strict=False)) and dist[0] < 0.15, dist
    assert run._cache_size() == 1


def test_ddim_inversion_then_regeneration_reconstructs():
    """Encode with ``ddim_encode`` and decode with deterministic DDIM, the same denoiser: the mean
    reconstruction error falls with the number of steps (about 1/N) and is small at 200 steps."""
    den = G.exact_denoiser(MIX)
    x = G.sample(MIX, jax.random.key(11), 1000)
    run = jax.jit(lambda g: E.invert_and_regenerate(den, den, x, g))
    errors = []
    for n in (10, 25, 50, 100, 200):
        out, info = run(S.make_grid("discrete", SCHEDULE, n, 200))
        assert int(info["nfe"]) == 2 * n and info["latent"].shape == x.shape
        errors.append(float(jnp.mean(jnp.linalg.norm(out - x, axis=-1))))
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)) and errors[-1] < 0.05, errors
    assert run._cache_size() == 1


@pytest.mark.parametrize("how", ["sdedit", "inversion"])
def test_class_swap_moves_samples_into_the_target_component(how):
    """Inputs from component 0; edited with label 1's conditional denoiser (:func:`with_label`): SDEdit at
    strength 0.7 and DDIM inversion (source label 0, target label 1) land in component 1 (classified by the
    component densities), with the law of component 1; SDEdit at strength 0.1 keeps them in component 0."""
    grid = S.make_grid("discrete", SCHEDULE, 40, 64)
    x = G.sample(COMPONENTS[0], jax.random.key(4), 1000)
    target = E.with_label(conditional, 1)
    if how == "sdedit":
        out, _ = E.sdedit("ddim", target, jax.random.key(0), x, grid, 0.7, eta=jnp.float32(1.0))
        low, _ = E.sdedit("ddim", target, jax.random.key(0), x, grid, 0.1, eta=jnp.float32(1.0))
        assert np.mean(_component(low) == 0) > 0.99
    else:
        out, _ = E.invert_and_regenerate(E.with_label(conditional, 0), target, x, grid)
    sw = _sw(out, G.sample(COMPONENTS[1], jax.random.key(9), 1000))
    floor = _sw(G.sample(COMPONENTS[1], jax.random.key(10), 1000), G.sample(COMPONENTS[1], jax.random.key(9), 1000))
    assert np.mean(_component(out) == 1) > 0.99 and sw < floor + 0.1, (how, sw, floor)


def test_slerp():
    """Shoemake 1985: endpoints; orthogonal equal-norm vectors keep their norm (the path is a great circle at
    the angle tπ/2); parallel vectors give linear interpolation; t per example."""
    rng = np.random.default_rng(0)
    z0 = rng.normal(size=(3, 4, 2)).astype(np.float32)
    z1 = rng.normal(size=(3, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(E.slerp(z0, z1, 0.0), z0, atol=1e-5)
    np.testing.assert_allclose(E.slerp(z0, z1, 1.0), z1, atol=1e-5)
    a, b = np.zeros((2, 6), np.float32), np.zeros((2, 6), np.float32)
    a[:, 0], b[:, 3] = 2.0, 2.0
    for t in (0.1, 0.25, 0.5, 0.9):
        out = np.asarray(E.slerp(a, b, t))
        np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 2.0, rtol=1e-5)
        np.testing.assert_allclose(out[:, [0, 3]], 2.0 * np.array([[np.cos(t * np.pi / 2), np.sin(t * np.pi / 2)]] * 2),
                                   atol=1e-5)
    c = np.asarray(z0) * 3.0
    t = np.array([0.2, 0.5, 0.8], np.float32)
    np.testing.assert_allclose(E.slerp(z0, c, t), (1 - t)[:, None, None] * z0 + t[:, None, None] * c, rtol=1e-5,
                               atol=1e-5)
    mid = np.asarray(E.slerp(z0, z1, 0.5))
    assert not np.allclose(mid, 0.5 * (z0 + z1), atol=1e-3)
