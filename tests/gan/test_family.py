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
from gm_jax.gan.family import make_networks
from gm_jax.gan.nets.stylegan import num_styles

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


def test_conditional_dcgan_step_spectral_norm_and_sampling():
    """Projection cGAN with a spectrally normalised discriminator (Miyato et al. 2018), hinge loss, EMA."""
    spec = DataSpec(shape=(8, 8, 1), num_classes=3)  # one stride-2 layer each: cheap to compile
    cfg = default_config()
    cfg.model.update({"conditional": True, "features": 4, "latent_dim": 8, "embed_dim": 4,
                      "loss": "hinge", "discriminator_normalization": "spectral", "spectral_iters": 30})
    cfg.optim.ema_decay = 0.9
    fam = make_family(cfg, spec)
    batch = {"x": jax.random.uniform(jax.random.key(0), (4, 8, 8, 1), minval=-1, maxval=1),
             "label": jnp.array([0, 1, 2, 1])}
    state = jax.jit(fam.init)(jax.random.key(1), batch)
    new, metrics = jax.jit(fam.train_step)(state, batch, jax.random.key(2))
    assert int(new.step) == 1 and np.isfinite(float(metrics["d_loss"]))
    # Spectral norm: each kernel viewed as the matrix [kh kw in, out] of the SN definition, divided by the
    # sigma of the stored power-iteration vector u, has top singular value 1 (numpy SVD as reference); the
    # stored sigma is the raw kernel's top singular value (to the size of one Adam step).
    d_params, sn = new.params["discriminator"], new.extra["spectral"]
    for layer, vec in (("Conv_0", "SpectralNorm_0"), ("Dense_0", "SpectralNorm_1")):
        kernel = np.asarray(d_params[layer]["kernel"], np.float64)
        matrix = kernel.reshape(-1, kernel.shape[-1])
        u = np.asarray(sn[vec]["kernel_u"], np.float64)
        sigma_u = np.linalg.norm(matrix @ u) / np.linalg.norm(u)
        top = np.linalg.svd(matrix, compute_uv=False)[0]
        np.testing.assert_allclose(np.linalg.svd(matrix / sigma_u, compute_uv=False)[0], 1.0, rtol=1e-3)
        np.testing.assert_allclose(float(sn[vec]["kernel_sigma"]), top, rtol=1e-2)
    assert not np.allclose(new.extra["spectral"]["SpectralNorm_0"]["kernel_u"],
                           state.extra["spectral"]["SpectralNorm_0"]["kernel_u"])
    # W / sigma(W) is scale invariant: tripling every raw kernel leaves the critic unchanged (it would not
    # be without the normalisation).
    _, disc = make_networks(cfg.model, spec)
    scaled = {k: {**v, "kernel": 3.0 * v["kernel"]} if "kernel" in v else v for k, v in d_params.items()}
    critic = jax.jit(lambda p: disc.apply({"params": p, "spectral": sn}, batch["x"], batch["label"]))
    np.testing.assert_allclose(critic(scaled), critic(d_params), rtol=1e-4, atol=1e-5)
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


def test_stylegan_family_step_style_mixing_noise_and_truncation():
    """StyleGAN generator in the family: one step with style mixing on every example trains both networks.
    Style mixing (Karras et al. 2019, Sec. 3.1) with cutoff L (number of styles) is the pure w(z) generator,
    with cutoff 0 the pure w(z_mix) one, in between neither. Noise inputs: zero strength at init has no
    effect, otherwise the output follows the noise key. Truncation psi = 0 maps every latent to the mean
    style (samples differ only by the noise, whose strengths are ~1e-4 after one step), psi = 1 does not."""
    spec = DataSpec(shape=(8, 8, 1))
    cfg = default_config()
    cfg.model.update({"architecture": "stylegan", "features": 4, "latent_dim": 8, "w_dim": 8,
                      "mapping_layers": 2, "style_mixing": 1.0, "discriminator_normalization": "none",
                      "minibatch_std": True})
    fam = make_family(cfg, spec)
    batch = {"x": jax.random.uniform(jax.random.key(0), (4, 8, 8, 1), minval=-1, maxval=1)}
    state = jax.jit(fam.init)(jax.random.key(1), batch)
    new, metrics = jax.jit(fam.train_step)(state, batch, jax.random.key(2))
    assert int(new.step) == 1 and all(np.isfinite(float(v)) for v in metrics.values())
    for net in ("generator", "discriminator"):
        assert max_change(state.params[net], new.params[net]) > 1e-4
    assert set(new.params["generator"]) == {"mapping", "synthesis"}

    gen, _ = make_networks(cfg.model, spec)
    num = num_styles(8)
    plain = jax.jit(lambda p, z: gen.apply({"params": p}, z))
    mix = jax.jit(lambda p, z, zm, c: gen.apply({"params": p}, z, zm, c))
    noisy = jax.jit(lambda p, z, k: gen.apply({"params": p}, z, rngs={"noise": k}))
    g = new.params["generator"]
    z1, z2 = jax.random.normal(jax.random.key(4), (2, 8)), jax.random.normal(jax.random.key(5), (2, 8))
    plain1, plain2 = plain(g, z1), plain(g, z2)
    np.testing.assert_allclose(mix(g, z1, z2, jnp.array(num)), plain1, atol=1e-5)
    np.testing.assert_allclose(mix(g, z1, z2, jnp.array(0)), plain2, atol=1e-5)
    mixed = mix(g, z1, z2, jnp.array(1))
    assert not np.allclose(mixed, plain1, atol=1e-4) and not np.allclose(mixed, plain2, atol=1e-4)
    g0 = state.params["generator"]
    np.testing.assert_allclose(noisy(g0, z1, jax.random.key(5)), plain(g0, z1), atol=1e-6)
    shifted = jax.tree.map(lambda p: p + 0.5, g0)
    a, b = noisy(shifted, z1, jax.random.key(5)), noisy(shifted, z1, jax.random.key(6))
    assert not np.allclose(a, b, atol=1e-4)
    np.testing.assert_array_equal(a, noisy(shifted, z1, jax.random.key(5)))

    x0, info = fam.sample(new.params, jax.random.key(3), 6, truncation=0.0)
    x1, _ = fam.sample(new.params, jax.random.key(3), 6, truncation=1.0)
    assert x0.shape == (6, 8, 8, 1) and info["truncation"] == 0.0 and float(jnp.max(jnp.abs(x1))) <= 1.0
    spread = lambda v: float(jnp.max(jnp.std(v, axis=0)))  # noqa: E731
    assert spread(x0) < 1e-2 < spread(x1)
    with pytest.raises(ConfigError):
        fam.sample(new.params, jax.random.key(3), 6, truncation=1.5)


@pytest.mark.parametrize("change,spec", [
    ({"loss": "wasserstien"}, TOY_SPEC),
    ({"gp_weight": -10.0}, TOY_SPEC),
    ({"n_critic": 0}, TOY_SPEC),
    ({"architecture": "dcgan"}, TOY_SPEC),
    ({"architecture": "dcgan", "gp_weight": 10.0, "discriminator_normalization": "batch"},
     DataSpec(shape=(28, 28, 1))),
    ({"architecture": "dcgan", "conditional": True}, DataSpec(shape=(28, 28, 1))),
    ({"architecture": "stylegan", "style_mixing": 1.5}, DataSpec(shape=(28, 28, 1))),
    ({"architecture": "stylegan"}, DataSpec(shape=(30, 30, 1))),
    ({"architecture": "dcgan", "discriminator_normalization": "spectral", "spectral_iters": 0},
     DataSpec(shape=(28, 28, 1))),
    ({"architecture": "dcgan", "minibatch_std": True, "gp_weight": 1.0, "discriminator_normalization": "none"},
     DataSpec(shape=(28, 28, 1))),
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


def test_declared_sample_options_and_conditioning():
    """Each GAN family declares exactly the sampling options its sample takes: label (< num_classes) for a
    conditional GAN, truncation for StyleGAN, direction for CycleGAN only; the module's SAMPLE_OPTIONS
    covers them all, and the CLI-side check rejects undeclared or out-of-range values with one line."""
    from gm_jax.gan import family as gan_family
    from gm_jax.gan.image_to_image import model_defaults as i2i_defaults

    assert {o.name for o in gan_family.SAMPLE_OPTIONS} == {"label", "truncation", "direction"}
    assert all(o.kind in ("int", "float", "str") for o in gan_family.SAMPLE_OPTIONS)
    toy = make_family(toy_config(), TOY_SPEC)
    assert toy.sample_options == () and toy.conditioning == ()
    cond_cfg = default_config()
    cond_cfg.model.conditional = True
    cond = make_family(cond_cfg, DataSpec(shape=(8, 8, 1), num_classes=3))
    assert [o.name for o in cond.sample_options] == ["label"] and cond.conditioning == ("label",)
    assert cond.check_sample_options({"label": "2"}) == {"label": 2}
    for bad in ({"label": 3}, {"label": -1}, {"truncation": 0.5}):
        with pytest.raises(ConfigError) as err:
            cond.check_sample_options(bad)
        assert "\n" not in str(err.value)
    style_cfg = default_config()
    style_cfg.model.architecture = "stylegan"
    style = make_family(style_cfg, DataSpec(shape=(8, 8, 1)))
    assert [o.name for o in style.sample_options] == ["truncation"] and style.conditioning == ()
    with pytest.raises(ConfigError):
        style.check_sample_options({"truncation": 1.5})
    spec28 = DataSpec(shape=(28, 28, 1), num_classes=10)
    for task, names in (("pix2pix", []), ("cyclegan", ["direction"]), ("srgan", [])):
        cfg = default_config()
        cfg.model = i2i_defaults(task)
        cfg.model.feature_weight = 0.0 if task == "srgan" else cfg.model.get("feature_weight", 0.0)
        fam = make_family(cfg, spec28)
        assert fam.name == f"gan_{task}" and fam.conditioning == ("image",)
        assert [o.name for o in fam.sample_options] == names
        assert all(o in gan_family.SAMPLE_OPTIONS for o in fam.sample_options)


def test_evaluate_is_the_loss_on_real_and_generated_batches():
    """``evaluate``: the non-saturating loss recomputed by hand from the critic's logits on the real batch and
    on G(z) with z drawn from the same key: d_loss = softplus(-D(x)) + softplus(D(G(z))), g_loss =
    softplus(-D(G(z))), accuracy = share of real logits > 0 and fake logits <= 0; undefined for a spectrally
    normalised critic."""
    x = eight_gaussians(jax.random.key(0), 32)
    cfg = toy_config()
    fam = make_family(cfg, TOY_SPEC)
    params = jax.jit(fam.init)(jax.random.key(1), {"x": x}).params
    key = jax.random.key(5)
    got = jax.jit(fam.evaluate)(params, {"x": x}, key)
    gen, disc = make_networks(cfg.model, TOY_SPEC)
    z = jax.random.normal(key, (32, cfg.model.latent_dim))
    fake = gen.apply({"params": params["generator"]}, z, None)
    real_logits = np.asarray(disc.apply({"params": params["discriminator"]}, x, None), np.float64)
    fake_logits = np.asarray(disc.apply({"params": params["discriminator"]}, fake, None), np.float64)
    def softplus(t):
        return np.logaddexp(0.0, t)

    d_real, d_fake = np.mean(softplus(-real_logits)), np.mean(softplus(fake_logits))
    np.testing.assert_allclose(float(got["d_real"]), d_real, rtol=1e-5)
    np.testing.assert_allclose(float(got["d_fake"]), d_fake, rtol=1e-5)
    np.testing.assert_allclose(float(got["d_loss"]), d_real + d_fake, rtol=1e-5)
    np.testing.assert_allclose(float(got["g_loss"]), np.mean(softplus(-fake_logits)), rtol=1e-5)
    accuracy = 0.5 * (np.mean(real_logits > 0) + np.mean(fake_logits <= 0))
    np.testing.assert_allclose(float(got["d_accuracy"]), accuracy, rtol=1e-6)
    image_spec = DataSpec(shape=(28, 28, 1), name="fashion_mnist")
    spectral = default_config()
    spectral.model.update({"features": 8, "discriminator_normalization": "spectral"})
    assert make_family(spectral, image_spec).evaluate is None
