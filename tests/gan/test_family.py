"""The GAN family: protocol, alternating updates with TTUR and n_critic, sampling, config errors, and a short
run on eight Gaussians that must cover most modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core import DataSpec
from gm_jax.core.errors import ConfigError
from gm_jax.gan import default_config, make_family
from gm_jax.gan.diagnostics import mode_coverage, ring_centres

TOY_SPEC = DataSpec(shape=(2,), name="eight_gaussians")


def toy_config(**model):
    cfg = default_config()
    cfg.model.update({"architecture": "mlp", "hidden": 32, "depth": 2, "latent_dim": 4, **model})
    return cfg


def eight_gaussians(key, num, std=0.1):
    """Mixture of 8 Gaussians on the circle of radius 2 (Metz et al. 2017), drawn here for the test."""
    k_mode, k_noise = jax.random.split(key)
    centres = ring_centres(8, 2.0)
    return centres[jax.random.randint(k_mode, (num,), 0, 8)] + std * jax.random.normal(k_noise, (num, 2))


def max_change(before, after):
    pairs = zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    return max(float(jnp.max(jnp.abs(a - b))) for a, b in pairs)


def test_ttur_and_n_critic_scale_the_first_adam_updates():
    """A first Adam step moves every parameter with a non-zero gradient by ~lr (m_hat / sqrt(v_hat) = sign g),
    so the largest change of G is its own learning rate, D's is its own with n_critic = 1 and grows beyond it
    with n_critic = 3."""
    batch = {"x": eight_gaussians(jax.random.key(0), 16)}
    for n_critic in (1, 3):
        cfg = toy_config(generator_lr=1e-3, discriminator_lr=1e-2, n_critic=n_critic,
                         r1_weight=1.0 if n_critic == 1 else 0.0)
        fam = make_family(cfg, TOY_SPEC)
        state = jax.jit(fam.init)(jax.random.key(1), batch)
        new, metrics = jax.jit(fam.train_step)(state, batch, jax.random.key(2))
        assert int(new.step) == 1
        assert set(new.params) == {"generator", "discriminator"} == set(new.opt_state)
        np.testing.assert_allclose(max_change(state.params["generator"], new.params["generator"]), 1e-3,
                                   rtol=1e-2)
        d_change = max_change(state.params["discriminator"], new.params["discriminator"])
        if n_critic == 1:
            np.testing.assert_allclose(d_change, 1e-2, rtol=1e-2)
        else:
            assert 1.5e-2 < d_change < 5e-2  # three critic steps of ~1e-2 each (Adam's ratio may exceed 1 later)
        assert all(np.isfinite(float(v)) for v in metrics.values())
        assert n_critic > 1 or float(metrics["r1_penalty"]) > 0


def test_conditional_dcgan_step_and_sampling():
    spec = DataSpec(shape=(8, 8, 1), num_classes=3)  # one stride-2 layer each: cheap to compile
    cfg = default_config()
    cfg.model.update({"conditional": True, "features": 4, "latent_dim": 8, "embed_dim": 4,
                      "loss": "hinge", "discriminator_normalization": "layer"})
    cfg.optim.ema_decay = 0.9
    fam = make_family(cfg, spec)
    batch = {"x": jax.random.uniform(jax.random.key(0), (4, 8, 8, 1), minval=-1, maxval=1),
             "label": jnp.array([0, 1, 2, 1])}
    state = jax.jit(fam.init)(jax.random.key(1), batch)
    new, metrics = jax.jit(fam.train_step)(state, batch, jax.random.key(2))
    assert int(new.step) == 1 and np.isfinite(float(metrics["d_loss"]))
    # EMA with decay 0.9 moved a tenth of the way: ema - old = 0.1 (new - old).
    old_g, new_g, ema_g = (jax.tree.leaves(t["generator"]) for t in (state.params, new.params, new.ema_params))
    for o, n, e in zip(old_g, new_g, ema_g, strict=True):
        np.testing.assert_allclose(e - o, 0.1 * (n - o), atol=1e-6)
    x, info = fam.sample(new.sampling_params(), jax.random.key(3), 5, label=2)
    assert x.shape == (5, 8, 8, 1) and info["nfe"] == 1 and float(jnp.max(jnp.abs(x))) <= 1.0
    np.testing.assert_array_equal(info["label"], np.full(5, 2))
    _, info = fam.sample(new.params, jax.random.key(3), 5)
    assert info["label"].shape == (5,)
    with pytest.raises(ConfigError):
        fam.sample(new.params, jax.random.key(3), 5, label=7)


@pytest.mark.parametrize("change,spec", [
    ({"loss": "wasserstien"}, TOY_SPEC),
    ({"gp_weight": -10.0}, TOY_SPEC),
    ({"n_critic": 0}, TOY_SPEC),
    ({"architecture": "dcgan"}, TOY_SPEC),
    ({"architecture": "dcgan", "gp_weight": 10.0, "discriminator_normalization": "batch"},
     DataSpec(shape=(28, 28, 1))),
    ({"architecture": "dcgan", "conditional": True}, DataSpec(shape=(28, 28, 1))),
])
def test_bad_config_is_one_line_config_error(change, spec):
    cfg = default_config()
    cfg.model.update(change)
    with pytest.raises(ConfigError) as err:
        make_family(cfg, spec)
    assert "\n" not in str(err.value)


def test_wgan_gp_covers_the_eight_gaussians():
    """WGAN-GP (Gulrajani et al. 2017: lambda, n_critic = 5, Adam beta = (0.5, 0.9)) on the ring of
    eight Gaussians, std 0.1: at least 6 modes get >= 20 of 2000 samples within 3 std of their centre."""
    cfg = toy_config(hidden=64, latent_dim=8, loss="wasserstein", gp_weight=1.0, n_critic=5)
    cfg.optim.update({"learning_rate": 1e-3, "b1": 0.5, "b2": 0.9})
    fam = make_family(cfg, TOY_SPEC)
    key = jax.random.key(0)
    state = fam.init(key, {"x": jnp.zeros((128, 2))})

    @jax.jit
    def train(state):
        def body(s, step):
            k = jax.random.fold_in(key, step)
            s, metrics = fam.train_step(s, {"x": eight_gaussians(jax.random.fold_in(k, 1), 128)}, k)
            return s, metrics["d_loss"]
        return jax.lax.scan(body, state, jnp.arange(STEPS))

    state, d_loss = train(state)
    assert bool(jnp.all(jnp.isfinite(d_loss)))
    x, _ = fam.sample(state.params, jax.random.key(1), 2000)
    coverage = mode_coverage(x, ring_centres(8, 2.0), 0.1, min_count=20)
    assert int(coverage.modes_covered) >= 6, coverage
    assert float(coverage.high_quality_fraction) > 0.15, coverage


STEPS = 800
