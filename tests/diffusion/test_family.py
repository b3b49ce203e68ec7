"""The diffusion family on 2-D toy data: training lowers the loss, sampling with runtime arrays does not
recompile, evaluation gives a finite bound, bad input raises one-line ConfigErrors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gm_jax.core import DataSpec
from gm_jax.core.errors import ConfigError
from gm_jax.diffusion.family import make_family, model_defaults


def _config(**model):
    cfg = ml_collections.ConfigDict()
    cfg.model = model_defaults()
    cfg.model.network = "mlp"
    cfg.model.mlp_hidden = (64, 64)
    cfg.model.num_timesteps = 100
    cfg.model.max_sample_steps = 100
    cfg.model.update(model)
    cfg.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=3e-3, ema_decay=0.99))
    return cfg


def _toy(n=512):
    rs = np.random.RandomState(0)
    label = (rs.rand(n) < 0.5).astype(np.int32)
    x = np.where(label[:, None] == 1, 1.0, -1.0) + 0.1 * rs.randn(n, 2)
    return x.astype(np.float32), label


def test_family_trains_samples_and_evaluates():
    x, label = _toy()
    fam = make_family(_config(), DataSpec(shape=(2,), num_classes=2))
    state = fam.init(jax.random.key(0), {"x": x[:4], "label": label[:4]})
    step = jax.jit(fam.train_step)
    losses = []
    for i in range(150):
        idx = np.random.RandomState(i).randint(0, len(x), 128)
        state, metrics = step(state, {"x": x[idx], "label": label[idx]}, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 150 and state.ema_params is not None
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    # guided samples of class 1 sit near (1, 1); steps/η/guidance are runtime arrays (one compilation)
    for steps, eta, w in [(7, 1.0, 3.0), (1, 0.5, 1.0), (20, 0.0, 2.0)]:
        out, info = fam.sample(state.params, jax.random.key(1), 64, sampler="ddim", steps=steps, eta=eta,
                               guidance=w, label=1)
        assert out.shape == (64, 2) and info["nfe"] == steps
    np.testing.assert_allclose(np.asarray(out).mean(0), [1.0, 1.0], atol=0.3)
    ev = fam.evaluate(state.params, {"x": x[:32], "label": label[:32]}, jax.random.key(2))
    assert np.isfinite(float(ev["bits_per_dim"])) and np.isfinite(float(ev["loss"]))


def test_family_sample_does_not_recompile():
    fam = make_family(_config(), DataSpec(shape=(2,), num_classes=2))
    x, label = _toy(8)
    params = fam.init(jax.random.key(0), {"x": x, "label": label}).params
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *a, **k: compiles.append(name) if name == "/jax/core/compile/backend_compile_duration" else None)
    fam.sample(params, jax.random.key(0), 8, sampler="heun", steps=5, guidance=1.5, label=0)
    first = len(compiles)
    fam.sample(params, jax.random.key(0), 8, sampler="heun", steps=9, guidance=4.0, label=1)
    fam.sample(params, jax.random.key(3), 8, sampler="heun", steps=2, guidance=0.0, label=[0, 1] * 4)
    assert first >= 1 and len(compiles) == first


def test_family_bad_input():
    fam = make_family(_config(), DataSpec(shape=(2,), num_classes=2))
    x, label = _toy(8)
    params = fam.init(jax.random.key(0), {"x": x, "label": label}).params
    with pytest.raises(ConfigError, match="label must be in"):
        fam.sample(params, jax.random.key(0), 4, label=2)
    with pytest.raises(ConfigError, match="steps must be <= 100"):
        fam.sample(params, jax.random.key(0), 4, steps=1000)
    with pytest.raises(ConfigError, match="unknown sampler"):
        fam.sample(params, jax.random.key(0), 4, sampler="plms")
    with pytest.raises(ConfigError, match="eta"):
        fam.sample(params, jax.random.key(0), 4, eta=-0.1)
    with pytest.raises(ConfigError, match="model.process"):
        make_family(_config(process="vpsde"), DataSpec(shape=(2,)))
    with pytest.raises(ConfigError, match="needs image data"):
        make_family(_config(network="unet"), DataSpec(shape=(2,)))
    with pytest.raises(ConfigError, match="ve_sigma_min"):
        make_family(_config(process="ve", parametrization="score", ve_sigma_max=0.001), DataSpec(shape=(2,)))
    with pytest.raises(ConfigError, match="eval_num_t"):
        make_family(_config(eval_num_t=100), DataSpec(shape=(2,)))


def test_ve_sigma_range_reaches_the_prior():
    """model.ve_sigma_max sets σ(T) of the VE SDE, which is the prior scale the samplers start from."""
    fam = make_family(_config(process="ve", parametrization="score", ve_sigma_max=5.0), DataSpec(shape=(2,)))
    x, _ = _toy(8)
    params = jax.tree.map(jnp.zeros_like, fam.init(jax.random.key(0), {"x": x}).params)
    # a zero network predicts score 0, so x̂_0 = x and the probability-flow ODE does not move: the draws are
    # the prior N(0, σ_max² I)
    draws, _ = fam.sample(params, jax.random.key(1), 4000, sampler="euler", steps=3)
    assert abs(float(np.std(np.asarray(draws))) - 5.0) < 0.2


def test_family_declares_its_sample_options():
    """The declaration: steps narrowed to the schedule, label only when class-conditional, defaults from the
    config; the CLI path check_sample_options → sample works; another sampler's option is one clear error."""
    from gm_jax.diffusion.family import SAMPLE_OPTIONS

    fam = make_family(_config(num_timesteps=40, sample_steps=20, eta=0.3, pc_snr=0.2, sampler="euler"),
                      DataSpec(shape=(2,), num_classes=2))
    opts = {o.name: o for o in fam.sample_options}
    assert fam.conditioning == ("label",)
    assert opts["steps"].high == 40 and opts["label"].high == 1
    assert opts["eta"].default == 0.3 and opts["snr"].default == 0.2 and opts["sampler"].default == "euler"
    assert "ddim" in opts["sampler"].choices and {"eta", "snr", "n_inner"} <= set(opts)
    assert {o.name for o in SAMPLE_OPTIONS} >= set(opts)
    unconditional = make_family(_config(), DataSpec(shape=(2,)))
    assert unconditional.conditioning == () and "label" not in {o.name for o in unconditional.sample_options}
    with pytest.raises(ConfigError, match=r"steps must be in \[1, 40\]"):
        fam.check_sample_options({"steps": 41})
    x, label = _toy(8)
    params = fam.init(jax.random.key(0), {"x": x, "label": label}).params
    given = fam.check_sample_options({"steps": "3", "label": 1, "eta": None})
    out, info = fam.sample(params, jax.random.key(0), 4, **given)
    assert out.shape == (4, 2) and info["nfe"] == 3
    with pytest.raises(ConfigError, match="sampler 'euler' does not take --eta; samplers that take it: ddim"):
        fam.sample(params, jax.random.key(0), 4, **fam.check_sample_options({"eta": 0.5}))
    with pytest.raises(ConfigError, match="does not take --temperature"):
        fam.sample(params, jax.random.key(0), 4, temperature=0.5)
    # pc: the config's SNR and corrector steps are the defaults; n_corrector is an array (NFE follows it)
    _, info = fam.sample(params, jax.random.key(0), 4, sampler="pc", steps=3)
    assert info["nfe"] == 3 * 2
    _, info = fam.sample(params, jax.random.key(0), 4, sampler="pc", steps=3, n_corrector=2, corrector="langevin")
    assert info["nfe"] == 3 * 3


def _image_family():
    """A tiny image model on 8 x 8 x 1 images in [0, 1] (an MLP denoiser, T = 20), its spec and parameters."""
    spec = DataSpec(shape=(8, 8, 1), num_classes=2, value_range=(0.0, 1.0))
    fam = make_family(_config(num_timesteps=20, max_sample_steps=20, sample_steps=5, mlp_hidden=(16,), mlp_emb_dim=8),
                      spec)
    x = np.random.RandomState(0).rand(2, 8, 8, 1).astype(np.float32)
    params = fam.init(jax.random.key(0), {"x": x, "label": np.zeros(2, np.int32)}).params
    return fam, spec, x, params


def test_family_restores_with_every_inverse_method():
    """Family.restore: [num, B, H, W, C] in the data's range and info["nfe"] = the method's expected NFE; at
    σ_y = 0 DDNM and DDRM return the observed pixels of the (data-range) input, and DDRM's super-resolution
    has A x = y on the blocks the final clip to [0, 1] leaves alone, which holds only if the measurement is
    mapped to the model's [−1, 1] as a x + b gives a y + b A 1; an option of another method and an operator
    of another shape are one-line errors."""
    from gm_jax.diffusion import operators
    from gm_jax.diffusion.inverse import INVERSE_SAMPLERS

    fam, spec, x, params = _image_family()
    assert fam.can_restore and fam.can_edit
    opts = {o.name: o for o in fam.restore_options}
    assert opts["steps"].high == 20 and opts["method"].choices == tuple(INVERSE_SAMPLERS) and opts["label"].high == 1
    op = operators.box_mask(spec.shape, 2, 3, 4, 4)
    y = np.asarray(op.A(x))
    observed = np.asarray(op.mask) > 0
    for method, inverse_spec in INVERSE_SAMPLERS.items():
        extra = {"resample": 1} if method == "repaint" else {}
        out, info = fam.restore(params, jax.random.key(1), y, op, method, 3, steps=3, **extra)
        out = np.asarray(out)
        assert out.shape == (3, 2, 8, 8, 1) and info["nfe"] == inverse_spec.expected_nfe(3, **extra), method
        assert 0.0 <= out.min() and out.max() <= 1.0
        if method in ("ddnm", "ddrm"):
            np.testing.assert_allclose(out[:, :, observed], np.broadcast_to(x, out.shape)[:, :, observed], atol=1e-5)
    down = operators.downsample(spec.shape, 2)
    y = np.asarray(down.A(x))
    out, info = fam.restore(params, jax.random.key(2), y, down, "ddrm", 2, steps=4, eta=0.5)
    out = np.asarray(out).reshape(-1, 8, 8, 1)
    inside = np.asarray(down.A((out > 0) & (out < 1))) == 1.0  # 2 x 2 blocks not clipped to [0, 1]
    assert inside.sum() >= 4 and info["nfe"] == 4
    np.testing.assert_allclose(np.asarray(down.A(out))[inside], np.tile(y, (2, 1, 1, 1))[inside], atol=1e-5)
    with pytest.raises(ConfigError, match="inverse method 'ddnm' does not take --zeta"):
        fam.restore(params, jax.random.key(0), y, down, "ddnm", 1, zeta=0.5)
    with pytest.raises(ConfigError, match="built for images"):
        fam.restore(params, jax.random.key(0), np.zeros((1, 4, 4, 1)), operators.downsample((4, 4, 1), 2), "ddrm")


def test_family_edits_images_and_vector_models_do_neither():
    """Family.edit: SDEdit runs the last round(s N) of N steps (a label per input), inversion encodes and
    decodes that many; vector (toy) models declare neither restoration nor editing."""
    fam, spec, x, params = _image_family()
    out, info = fam.edit(params, jax.random.key(1), x, 0.6, 3, steps=5, label=[0, 1], guidance=2.0)  # one per input
    assert np.asarray(out).shape == (3, 2, 8, 8, 1) and info["nfe"] == 3
    with pytest.raises(ConfigError, match=r"one per input \(2\) or one per draw \(6\)"):
        fam.edit(params, jax.random.key(1), x, 0.6, 3, label=[0, 1, 1])
    out, info = fam.edit(params, jax.random.key(1), x, 1.0, 1, invert=True, steps=4)
    assert np.asarray(out).shape == (1, 2, 8, 8, 1) and info["nfe"] == 8
    with pytest.raises(ConfigError, match=r"--strength must be in \(0, 1\]"):
        fam.edit(params, jax.random.key(1), x, 0.0, 1)
    with pytest.raises(ConfigError, match="drop --sampler"):
        fam.edit(params, jax.random.key(1), x, 0.5, 1, invert=True, sampler="ddpm")
    vectors = make_family(_config(), DataSpec(shape=(2,)))
    assert not vectors.can_restore and not vectors.can_edit and vectors.restore_options == vectors.edit_options == ()
    with pytest.raises(ConfigError, match=r"cannot restore \(it can: train, sample, evaluate\)"):
        vectors.check_restore_options({})
