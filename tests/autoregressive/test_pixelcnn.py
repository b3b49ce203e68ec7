"""PixelCNN: causality of masks and stacks (by gradients), normalisation, exact log-likelihood against a
closed form, sampling frequencies, family training."""


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import special, stats

from gm_jax.autoregressive import (
    GatedPixelCNN,
    categorical_log_prob,
    discretized_logistic_mixture_log_prob,
    masked_conv2d,
)
from gm_jax.autoregressive.family import make_family, model_defaults
from gm_jax.core import ConfigError, DataSpec


def dependency(fn, x):
    """|d out[i,j,c] / d x[i',j',c']| > 0 at any of the examples ``x [N,H,W,C]``, as a boolean
    [H,W,C,H,W,C] (several inputs, so that a ReLU that happens to be off at one input hides nothing)."""
    jac = jax.jit(jax.vmap(jax.jacrev(lambda z: fn(z[None])[0])))(x)
    return np.any(np.abs(np.asarray(jac)) > 0, axis=0)


def earlier(shape):
    """allowed[i,j,c,i',j',c'] = (i',j',c') strictly before (i,j,c) in raster-then-colour order."""
    h, w, c = shape
    order = np.arange(h * w * c).reshape(h, w, c)
    return order[None, None, None] < order[..., None, None, None]


def test_type_a_masked_conv_single_channel_sees_only_earlier_pixels():
    conv = masked_conv2d(1, 3, "A", 1)
    x = jax.random.normal(jax.random.key(0), (1, 5, 5, 1))
    params = conv.init(jax.random.key(1), x)
    dep = dependency(lambda z: conv.apply(params, z), x)
    allowed = earlier((5, 5, 1))
    assert not np.any(dep & ~allowed)                      # never itself or later pixels
    # a 3x3 type-A kernel reaches exactly the 4 causal neighbours (up-left, up, up-right, left)
    assert dep[2, 2, 0].sum() == 4 and dep[2, 2, 0, 2, 1, 0] and dep[2, 2, 0, 1, 2, 0]


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_rgb_channel_ordering(mask_type):
    conv = masked_conv2d(3, 3, mask_type, 3)          # one output feature per colour R, G, B
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 3))
    params = conv.init(jax.random.key(1), x)
    dep = dependency(lambda z: conv.apply(params, z), x)
    centre = dep[1, 1, :, 1, 1, :]                     # [out colour, in colour] at the same pixel
    expected = np.tril(np.ones((3, 3), bool), k=-1 if mask_type == "A" else 0)
    np.testing.assert_array_equal(centre, expected)    # R sees nothing (A), G sees R, B sees R and G
    assert not np.any(dep[1, 1][:, 1, 2:, :]) and not np.any(dep[1, 1][:, 2:, :, :])  # nothing later


@pytest.mark.parametrize("colors", [1, 3])
def test_gated_pixelcnn_is_causal_without_blind_spot(colors):
    shape = (5, 5, colors)
    net = GatedPixelCNN(num_colors=colors, params_per_color=2, hidden=12, num_layers=5, kernel_size=3)
    x = jax.random.normal(jax.random.key(0), (4, *shape))
    params = net.init(jax.random.key(1), x)
    w = jax.random.normal(jax.random.key(2), (2,))
    dep = dependency(lambda z: net.apply(params, z) @ w, x)
    # exactly the earlier sub-pixels: no dependence on itself or later ones, and no blind spot
    np.testing.assert_array_equal(dep, earlier(shape))


def test_probabilities_sum_to_one():
    key = jax.random.key(3)
    logits = jax.random.normal(key, (7, 256)) * 3
    total = jnp.exp(jax.vmap(lambda k: categorical_log_prob(logits, jnp.full((7,), k)))(jnp.arange(256)))
    np.testing.assert_allclose(total.sum(0), 1.0, atol=1e-5)
    for levels in (256, 2):
        k1, k2, k3 = jax.random.split(jax.random.fold_in(key, levels), 3)
        params = jnp.concatenate([jax.random.normal(k1, (9, 4)), jax.random.uniform(k2, (9, 4), minval=-1.2,
                                  maxval=1.2), jax.random.uniform(k3, (9, 4), minval=-5.0, maxval=0.0)], -1)
        every_k = jnp.broadcast_to(jnp.arange(levels)[:, None], (levels, 9))
        probs = jnp.exp(jax.jit(discretized_logistic_mixture_log_prob, static_argnums=2)(params[None], every_k,
                                                                                      levels))
        np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_discretized_logistic_matches_scipy_bins_and_edges():
    mu, log_s, levels = 0.3, -2.0, 256
    params = jnp.array([[0.0, mu, log_s]])
    s = np.exp(log_s)
    for k in (0, 1, 100, 166, 254, 255):
        u = 2 * k / 255 - 1
        lo = -np.inf if k == 0 else u - 1 / 255
        hi = np.inf if k == 255 else u + 1 / 255
        expected = stats.logistic.cdf(hi, mu, s) - stats.logistic.cdf(lo, mu, s)
        got = float(discretized_logistic_mixture_log_prob(params, jnp.array([k]), levels)[0])
        np.testing.assert_allclose(got, np.log(expected), rtol=1e-4)
    # a bin far in the tail (mass < 1e-5) falls back to density at the centre times the bin width
    far = jnp.array([[0.0, -0.9, -7.0]])
    got = float(discretized_logistic_mixture_log_prob(far, jnp.array([200]), levels)[0])
    u = 2 * 200 / 255 - 1
    np.testing.assert_allclose(got, stats.logistic.logpdf(u, -0.9, np.exp(-7.0)) + np.log(2 / 255), rtol=1e-4)


def family_config(**model):
    cfg = ml_collections.ConfigDict()
    cfg.model = model_defaults()
    cfg.model.update(hidden=8, num_layers=3, **model)
    cfg.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-2, ema_decay=0.0))
    return cfg


def constant_logits_params(family, spec, logits):
    """Params of a net that ignores its input: every weight zero, the last bias = the logits."""
    state = jax.jit(family.init)(jax.random.key(0), {"x": jnp.zeros((1, *spec.shape))})
    params = jax.tree.map(jnp.zeros_like, state.params)
    params["params"]["head_1"]["bias"] = jnp.tile(logits, spec.shape[-1])
    return params


def test_log_prob_of_input_independent_net_equals_sum_of_independent_log_probs():
    spec = DataSpec(shape=(3, 4, 2), value_range=(-1.0, 1.0), levels=5)
    family = make_family(family_config(), spec)
    logits = jnp.array([0.5, -1.0, 2.0, 0.0, 0.3])
    params = constant_logits_params(family, spec, logits)
    k = np.random.default_rng(0).integers(0, 5, size=(6, 3, 4, 2))
    x = jnp.asarray(-1.0 + k * 0.5, jnp.float32)
    nll = jax.jit(family.evaluate)(params, {"x": x}, jax.random.key(1))
    log_p = np.asarray(logits) - special.logsumexp(np.asarray(logits))
    expected = -np.mean(log_p[k].sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(nll["nll"], expected, rtol=1e-5)
    np.testing.assert_allclose(nll["bits_per_dim"], expected / (24 * np.log(2)), rtol=1e-5)


def test_sample_frequencies_match_softmax_at_temperature():
    spec = DataSpec(shape=(4, 4, 1), value_range=(0.0, 1.0), levels=4)
    family = make_family(family_config(), spec)
    logits = jnp.array([1.0, 0.0, -0.5, 0.7])
    params = constant_logits_params(family, spec, logits)
    for t in (1.0, 0.5):
        x, info = family.sample(params, jax.random.key(int(10 * t)), 250, temperature=jnp.float32(t))
        assert info["nfe"] == 16 and x.shape == (250, 4, 4, 1)
        k = np.asarray(x) * 3
        np.testing.assert_array_equal(k, np.round(k))          # exact levels inside the value range
        assert k.min() >= 0 and k.max() <= 3
        freq = np.bincount(np.round(k).astype(int).ravel(), minlength=4) / k.size
        np.testing.assert_allclose(freq, special.softmax(np.asarray(logits) / t), atol=0.03)


@pytest.mark.parametrize("likelihood,levels,shape", [("categorical", 2, (6, 6, 1)),
                                                     ("logistic_mixture", 256, (3, 3, 3))])
def test_family_training_lowers_the_loss(likelihood, levels, shape):
    spec = DataSpec(shape=shape, num_classes=2, value_range=(0.0, 1.0), levels=levels, binary=levels == 2)
    cfg = family_config(likelihood=likelihood, num_mixtures=2, class_conditional=True)
    cfg.model.num_layers = 2
    family = make_family(cfg, spec)
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, size=8)
    k = np.where(label[:, None, None, None] == 1, levels - 1, 0) * np.ones((8, *shape), int)
    k = np.where(rng.random(k.shape) < 0.1, levels - 1 - k, k)   # class-dependent images with 10 % noise
    batch = {"x": jnp.asarray(k / (levels - 1), jnp.float32), "label": jnp.asarray(label)}
    state = jax.jit(family.init)(jax.random.key(0), batch)
    step = jax.jit(family.train_step)
    losses = []
    for i in range(20):
        state, metrics = step(state, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.8 * losses[0]
    np.testing.assert_allclose(metrics["bits_per_dim"], losses[-1] / (np.prod(shape) * np.log(2)), rtol=1e-3)
    x, info = family.sample(state.params, jax.random.key(5), 2, label=jnp.array([0, 1]))
    assert x.shape == (2, *shape) and info["nfe"] == int(np.prod(shape))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert family.conditioning == ("label",)
    assert [(o.name, o.high) for o in family.sample_options] == [("temperature", None), ("label", 1)]
    with pytest.raises(ConfigError, match="--label must be in"):
        family.sample(state.params, jax.random.key(5), 2, label=2)
    with pytest.raises(ConfigError, match="--label must be in"):
        family.check_sample_options({"label": 5})


def test_bad_input_gets_one_line_config_errors():
    spec = DataSpec(shape=(4, 4, 1), value_range=(0.0, 1.0), levels=256)
    family = make_family(family_config(), spec)
    with pytest.raises(ConfigError, match="integer pixel levels") as err:
        family.init(jax.random.key(0), {"x": jnp.full((1, 4, 4, 1), 0.5 / 256)})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not class-conditional"):
        family.sample(None, jax.random.key(0), 2, label=0)
    with pytest.raises(ConfigError, match="--temperature must be > 0"):
        family.sample(None, jax.random.key(0), 2, temperature=0.0)
    assert [o.name for o in family.sample_options] == ["temperature"] and family.conditioning == ()
    with pytest.raises(ConfigError, match="model.likelihood"):
        make_family(family_config(likelihood="gaussian"), spec)
    with pytest.raises(ConfigError, match="discrete data"):
        make_family(family_config(), DataSpec(shape=(4, 4, 1), levels=0))
    cfg = family_config()
    cfg.data = ml_collections.ConfigDict(dict(dequantize=True))
    with pytest.raises(ConfigError, match="dequantize"):
        make_family(cfg, spec)
