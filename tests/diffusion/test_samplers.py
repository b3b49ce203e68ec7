"""Samplers with the exact score of a Gaussian mixture: every sampler recovers the mixture; DDIM is
deterministic and invertible; NFE counts are exact; no recompilation when steps/η change; samples do not
depend on the batch they are drawn in; bad input raises one-line ConfigErrors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.core.options import Option
from gm_jax.diffusion import gmm as G
from gm_jax.diffusion import samplers as P
from gm_jax.diffusion import schedules as S

WEIGHTS = np.array([0.3, 0.7])
MEANS = np.array([[-2.0, 0.0], [2.0, 1.0]])
COVS = np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.5]]])
MIX = G.gaussian_mixture(WEIGHTS, MEANS, COVS)
DENOISER = G.exact_denoiser(MIX)
NUM = 1200
MAX_STEPS = 64


def _check_mixture(x, cov_rtol=0.3):
    """Assign each sample to the nearer true mean and compare weights, means and covariances."""
    x = np.asarray(x)
    assert np.all(np.isfinite(x))
    comp = (x[:, 0] > 0).astype(int)
    for k in range(2):
        xs = x[comp == k]
        assert abs(len(xs) / len(x) - WEIGHTS[k]) < 0.05, (k, len(xs) / len(x))
        np.testing.assert_allclose(xs.mean(0), MEANS[k], atol=0.12)
        np.testing.assert_allclose(np.diag(np.cov(xs.T)), np.diag(COVS[k]), rtol=cov_rtol)


def _run(name, process, grid_name, steps, grid_kwargs=None, max_steps=MAX_STEPS, **kwargs):
    grid = S.make_grid(grid_name, process, steps, max_steps, **(grid_kwargs or {}))
    key = jax.random.key(0)
    x_T = P.prior_sample(jax.random.fold_in(key, 1), grid, (NUM, 2))
    static = {k: v for k, v in kwargs.items() if isinstance(v, str)}
    arrays = {k: v for k, v in kwargs.items() if k not in static}
    fn = jax.jit(lambda k, x, g, kw: P.get_sampler(name)(DENOISER, k, x, g, **static, **kw))
    return fn(key, x_T, grid, arrays)


DISCRETE = S.discrete_schedule("linear", 1000)
VP, VE, EDM = S.make_sde("vp"), S.make_sde("ve", sigma_min=0.1, sigma_max=20.0), S.make_sde("edm")


@pytest.mark.parametrize("name,process,grid_name,steps,kwargs,nfe", [
    ("ddpm", DISCRETE, "discrete", 50, {}, 50),
    ("ddim", DISCRETE, "discrete", 25, {"eta": jnp.float32(0.0)}, 25),
    ("ddim", VP, "uniform", 40, {"eta": jnp.float32(1.0)}, 40),
    ("euler", EDM, "edm", 40, {}, 40),
    ("heun", VP, "edm", 20, {}, 39),
    ("dpm_solver_2m", DISCRETE, "discrete", 15, {}, 15),
    # a_i = ε (σ_i/σ_L)² = σ_i²/2 (stable), 40 steps per level, then the Tweedie step from σ_L = 0.1
    ("annealed_langevin", VE, "uniform", 15, {"step_lr": jnp.float32(0.5 * 0.1**2), "n_inner": jnp.int32(40)},
     15 * 40 + 1),
])
def test_sampler_recovers_mixture(name, process, grid_name, steps, kwargs, nfe):
    gk = {"sigma_max": 40.0} if grid_name == "edm" else None
    x, info = _run(name, process, grid_name, steps, gk, **kwargs)
    assert int(info["nfe"]) == nfe
    _check_mixture(x)


@pytest.mark.parametrize("predictor,process,grid_name", [
    ("reverse_diffusion", VP, "uniform"), ("euler_maruyama", VE, "uniform"), ("ancestral", DISCRETE, "discrete"),
])
def test_pc_predictors_recover_mixture(predictor, process, grid_name):
    """First-order predictors alone: at 60 steps the variances still carry a 10-30 % discretization bias
    that depends on the noise drawn; at 240 steps all three are within the Monte-Carlo tolerance."""
    x, info = _run("pc", process, grid_name, 240, max_steps=256, predictor=predictor, corrector="none")
    assert int(info["nfe"]) == 240
    _check_mixture(x)


def test_pc_langevin_corrector_high_dim():
    """Langevin corrector with the target-SNR step (Song et al. 2021, Alg. 4) on a 16-D two-component
    mixture, batch-mean norms (per-example norms make the step depend on x, which biases low dimensions)."""
    d = 16
    means = np.stack([np.full(d, -1.0), np.full(d, 1.0)])
    covs = np.stack([0.25 * np.eye(d), 0.5 * np.eye(d)])
    mix = G.gaussian_mixture(np.array([0.4, 0.6]), means, covs)
    grid = S.make_grid("uniform", VP, 40, MAX_STEPS)
    x_T = P.prior_sample(jax.random.key(1), grid, (800, d))
    pc = P.get_sampler("pc")
    fn = jax.jit(lambda k, x, g: pc(G.exact_denoiser(mix), k, x, g, snr=0.16, n_corrector=2, norms="batch"))
    x, info = fn(jax.random.key(0), x_T, grid)
    assert int(info["nfe"]) == 40 * 3
    x = np.asarray(x)
    right = x.mean(1) > 0
    assert abs(right.mean() - 0.6) < 0.06
    np.testing.assert_allclose(x[right].mean(), 1.0, atol=0.05)
    np.testing.assert_allclose(x[right].var(0).mean(), 0.5, rtol=0.1)
    np.testing.assert_allclose(x[~right].var(0).mean(), 0.25, rtol=0.1)


def test_pc_default_corrector_converges_with_more_steps():
    """PC (reverse diffusion + Langevin, SNR 0.16) with the default corrector norms on the exact 2-D mixture:
    more levels are never worse (sliced W2 to exact draws, up to the two-sample noise) and 160 levels come
    close to the mixture. With per-example norms the distance grows with the number of levels instead."""
    from gm_jax.metrics.toy import sliced_wasserstein

    truth = G.sample(MIX, jax.random.key(11), 8000)
    pc = P.get_sampler("pc")
    assert pc.defaults()["norms"] == "batch"

    @jax.jit
    def dist(n):
        grid = S.make_grid("uniform", VP, n, 160)
        x_T = P.prior_sample(jax.random.key(1), grid, (2000, 2))
        x, _ = pc(DENOISER, jax.random.key(0), x_T, grid)
        return sliced_wasserstein(x, truth, jax.random.key(3), 128)

    d = [float(dist(jnp.int32(n))) for n in (10, 40, 160)]
    assert all(b <= a + 0.03 for a, b in zip(d, d[1:], strict=False)), d
    assert d[-1] < 0.08 and d[-1] < 0.5 * d[0], d


def test_ddim_eta0_deterministic_and_invertible():
    grid = S.make_grid("discrete", S.discrete_schedule("cosine", 1000), 250, 250)
    x0 = G.sample(MIX, jax.random.key(3), 64)
    enc = jax.jit(lambda x, g: P.ddim_encode(DENOISER, x, g))
    dec = jax.jit(lambda k, x, g: P.get_sampler("ddim")(DENOISER, k, x, g, eta=0.0))
    x_T, info_enc = enc(x0, grid)
    assert int(info_enc["nfe"]) == 250
    # the latent is roughly standard normal
    assert abs(float(jnp.std(x_T)) - 1.0) < 0.25
    a, _ = dec(jax.random.key(0), x_T, grid)
    b, _ = dec(jax.random.key(1), x_T, grid)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # η = 0: the key is irrelevant
    err = np.abs(np.asarray(a) - np.asarray(x0)).max(1)
    assert np.median(err) < 0.02 and err.max() < 0.15, (np.median(err), err.max())


def test_no_recompilation_when_steps_or_eta_change():
    process = DISCRETE

    @jax.jit
    def run(key, steps, eta):
        grid = S.make_grid("discrete", process, steps, MAX_STEPS)
        x_T = P.prior_sample(key, grid, (16, 2))
        return P.get_sampler("ddim")(DENOISER, key, x_T, grid, eta=eta)

    key = jax.random.key(0)
    out = {}
    for steps, eta in [(10, 0.0), (3, 0.5), (64, 1.0), (1, 0.0)]:
        x, info = run(key, jnp.int32(steps), jnp.float32(eta))
        assert int(info["nfe"]) == steps
        out[steps] = x
    assert run._cache_size() == 1
    # one step of DDIM from x_T returns E[x_0 | x_T]; it differs from the 64-step result
    assert not np.allclose(np.asarray(out[1]), np.asarray(out[64]))


@pytest.mark.parametrize("name", ["ddpm"])
def test_samples_do_not_depend_on_batch(name):
    grid = S.make_grid("discrete", DISCRETE, 8, MAX_STEPS)
    key = jax.random.key(7)

    @functools.partial(jax.jit, static_argnums=0)
    def draw(num, first):
        x_T = P.prior_sample(jax.random.fold_in(key, 1), grid, (num, 2), first)
        return P.get_sampler(name)(DENOISER, key, x_T, grid, first_index=first)[0]

    big = np.asarray(draw(8, jnp.int32(0)))
    # The noise is per example, so the prior draws agree bit for bit; the chains agree up to float32 rounding,
    # which XLA does differently for batch 3 and batch 8 and the mixture's responsibilities amplify (~1e-5).
    prior = lambda num, first: np.asarray(P.prior_sample(jax.random.fold_in(key, 1), grid, (num, 2), first))
    np.testing.assert_array_equal(prior(3, jnp.int32(5)), prior(8, jnp.int32(0))[5:])
    np.testing.assert_allclose(np.asarray(draw(3, jnp.int32(0))), big[:3], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(draw(3, jnp.int32(5))), big[5:], rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(draw(3, jnp.int32(4))) - big[5:]).max() > 0.1  # another index: another sample


def test_bad_sampler_input():
    with pytest.raises(ConfigError, match="unknown sampler 'ddmp'"):
        P.get_sampler("ddmp")
    ddim = P.get_sampler("ddim")
    with pytest.raises(ConfigError, match=r"eta must be in \[0, 1\]"):
        ddim.check({"eta": 1.5})
    with pytest.raises(ConfigError, match="sampler 'euler' does not take --eta; samplers that take it: ddim"):
        P.get_sampler("euler").check({"eta": 0.5})
    with pytest.raises(ConfigError, match="sampler 'heun' does not take --snr; samplers that take it: pc"):
        P.get_sampler("heun")(DENOISER, jax.random.key(0), jnp.zeros((2, 2)), S.make_grid("uniform", VP, 2, 4),
                              snr=0.1)
    with pytest.raises(ConfigError, match="predictor"):
        P.get_sampler("pc")(DENOISER, jax.random.key(0), jnp.zeros((2, 2)), S.make_grid("uniform", VP, 2, 4),
                            predictor="heun")


def test_registry_declares_every_sampler():
    """Each registered spec is callable with its declared defaults and makes exactly its declared NFE; the
    deterministic ones ignore the key; a new sampler is one chain function plus one spec."""
    grid = S.make_grid("uniform", VP, 6, 8)
    x_T = P.prior_sample(jax.random.key(1), grid, (16, 2))
    for name in P.sampler_names():
        spec = P.get_sampler(name)
        opts = spec.defaults()
        static = {k: v for k, v in opts.items() if k in spec.static_options}
        run = jax.jit(lambda k, o, spec=spec, static=static: spec(DENOISER, k, x_T, grid, **static, **o))
        arrays = {k: v for k, v in opts.items() if k not in static}
        arrays.update({"eta": 1.0} if "eta" in arrays else {})  # DDIM's default η = 0 is deterministic
        a, info = run(jax.random.key(0), arrays)
        nfe, declared = int(info["nfe"]), spec.expected_nfe(6)
        assert (nfe <= declared if spec.adaptive else nfe == declared), name  # adaptive: declared = most
        b, _ = run(jax.random.key(5), arrays)
        assert np.array_equal(np.asarray(a), np.asarray(b)) == spec.deterministic, name
    assert P.get_sampler("pc").expected_nfe(6, corrector="none") == 6
    assert P.get_sampler("heun").expected_nfe(6) == 11
    assert {"eta", "snr", "n_corrector", "step_lr", "n_inner"} <= {o.name for o in P.all_sampler_options()}
    assert P.samplers_taking("eta") == ("ddim",)

    def halfway_chain(denoiser, key, x_T, grid, first_index=0, frac=0.5):
        """x ← x + frac (x̂_0 − x) per step, a toy sampler (one NFE per step)."""

        def step(carry, k):
            x, nfe, extra = carry
            t, a, s = grid.t[k], grid.alpha[k], grid.sigma[k]
            return x + frac * (denoiser(x, t, a, s) - x), nfe + 1, extra

        return P.Chain(P.start(x_T), step)

    spec = P.SamplerSpec("halfway_test", halfway_chain, deterministic=True,
                         options=(Option("frac", "float", "step fraction", 0.5, low=0.0, high=1.0),))
    P.register_sampler(spec)
    try:
        with pytest.raises(ValueError, match="already registered"):
            P.register_sampler(spec)
        run = jax.jit(lambda f: P.get_sampler("halfway_test")(DENOISER, jax.random.key(0), x_T, grid, frac=f))
        x, info = run(jnp.float32(0.0))
        assert int(info["nfe"]) == 6
        np.testing.assert_array_equal(np.asarray(x), np.asarray(x_T))  # frac = 0 never moves
        x1, _ = run(jnp.float32(0.5))
        assert not np.allclose(np.asarray(x1), np.asarray(x_T)) and np.all(np.isfinite(np.asarray(x1)))
        assert P.samplers_taking("frac") == ("halfway_test",)
    finally:
        P._SAMPLERS.pop("halfway_test")


def test_ddim_eta0_draws_no_noise():
    """η = 0 skips the noise draw (lax.cond on η > 0): no random bits are generated in the chain."""
    grid = S.make_grid("discrete", DISCRETE, 4, 8)
    x_T = jnp.ones((4, 2))
    ddim = P.get_sampler("ddim")
    jaxpr = str(jax.make_jaxpr(lambda k, e: ddim(DENOISER, k, x_T, grid, eta=e))(jax.random.key(0), 0.0))
    assert "cond" in jaxpr
    a, _ = jax.jit(lambda k, e: ddim(DENOISER, k, x_T, grid, eta=e))(jax.random.key(0), jnp.float32(0.0))
    b, _ = jax.jit(lambda k, e: ddim(DENOISER, k, x_T, grid, eta=e))(jax.random.key(9), jnp.float32(0.0))
    c, _ = jax.jit(lambda k, e: ddim(DENOISER, k, x_T, grid, eta=e))(jax.random.key(9), jnp.float32(0.5))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))
