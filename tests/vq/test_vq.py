"""Vector quantizer, EMA codebook, perplexity, VQ-VAE family and the PixelCNN code prior."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import special, stats

from gm_jax.core import CheckpointError, ConfigError, DataSpec, FamilyInputs, Upstream
from gm_jax.vq import (
    EmaCodebookState,
    code_prior,
    code_prior_init,
    code_prior_log_prob,
    codebook_perplexity,
    ema_codebook_init,
    ema_codebook_update,
    nearest_code,
    quantize,
    sample_code_grid,
    vq_losses,
)
from gm_jax.vq.family import make_family, model_defaults


def test_nearest_code_matches_brute_force():
    rng = np.random.default_rng(0)
    z, codebook = rng.normal(size=(3, 5, 4)), rng.normal(size=(11, 4))
    expected = np.array([[np.argmin([np.sum((v - e) ** 2) for e in codebook]) for v in row] for row in z])
    np.testing.assert_array_equal(nearest_code(jnp.asarray(z, jnp.float32), jnp.asarray(codebook, jnp.float32)),
                                  expected)


def test_straight_through_gradient_is_identity_and_losses_route_gradients():
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    codebook = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    z_q, e_k, k = quantize(z, codebook)
    np.testing.assert_allclose(z_q, np.asarray(codebook)[np.asarray(k)], atol=1e-6)   # forward value e_k
    jac = jax.jacobian(lambda v: quantize(v, codebook)[0])(z)
    np.testing.assert_allclose(jac, np.eye(18).reshape(6, 3, 6, 3), atol=1e-6)        # backward: identity
    cb, commit = vq_losses(z, e_k, 0.25)
    diff = np.asarray(z) - np.asarray(e_k)
    np.testing.assert_allclose(cb, np.mean(diff**2), rtol=1e-5)
    np.testing.assert_allclose(commit, 0.25 * np.mean(diff**2), rtol=1e-5)
    # codebook loss moves only the codes, commitment only the encoder output
    g_cb_z = jax.grad(lambda v: vq_losses(v, quantize(v, codebook)[1], 0.25)[0])(z)
    g_commit_e = jax.grad(lambda c: vq_losses(z, quantize(z, c)[1], 0.25)[1])(codebook)
    assert np.all(np.asarray(g_cb_z) == 0) and np.all(np.asarray(g_commit_e) == 0)
    g_commit_z = jax.grad(lambda v: vq_losses(v, quantize(v, codebook)[1], 0.25)[1])(z)
    np.testing.assert_allclose(g_commit_z, 0.25 * 2 * diff / diff.size, rtol=1e-5)


def test_ema_update_equals_formula_step_by_step():
    rng = np.random.default_rng(2)
    num_codes, dim, decay, eps = 5, 3, 0.9, 1e-3
    codebook = rng.normal(size=(num_codes, dim))
    n_ref, m_ref = np.ones(num_codes), codebook.copy()
    state = ema_codebook_init(jnp.asarray(codebook, jnp.float32))
    update = jax.jit(ema_codebook_update)
    for _ in range(4):
        z = rng.normal(size=(2, 7, dim))
        k = rng.integers(0, num_codes - 1, size=(2, 7))       # the last code is never used
        state = update(state, jnp.asarray(z, jnp.float32), jnp.asarray(k), decay, eps)
        counts = np.array([(k == j).sum() for j in range(num_codes)])
        sums = np.stack([z[k == j].sum(0) if (k == j).any() else np.zeros(dim) for j in range(num_codes)])
        n_ref = decay * n_ref + (1 - decay) * counts
        m_ref = decay * m_ref + (1 - decay) * sums
        smoothed = (n_ref + eps) / (n_ref.sum() + num_codes * eps) * n_ref.sum()
        np.testing.assert_allclose(state.cluster_size, n_ref, rtol=1e-5)
        np.testing.assert_allclose(state.embed_sum, m_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.codebook, m_ref / smoothed[:, None], rtol=1e-4, atol=1e-6)
    assert isinstance(state, EmaCodebookState)


def test_perplexity_is_exp_entropy_of_usage():
    assert float(codebook_perplexity(jnp.arange(12) % 6, 6)) == pytest.approx(6.0, rel=1e-6)
    assert float(codebook_perplexity(jnp.zeros(9, jnp.int32), 6)) == pytest.approx(1.0, rel=1e-6)
    k = np.random.default_rng(3).integers(0, 8, size=200) ** 2 % 10
    p = np.bincount(k, minlength=10) / k.size
    np.testing.assert_allclose(codebook_perplexity(jnp.asarray(k), 10), np.exp(stats.entropy(p)), rtol=1e-5)


def test_code_dim_mismatch_is_one_clear_error():
    with pytest.raises(ConfigError, match="code dim 3 but the codebook has 4") as err:
        nearest_code(jnp.zeros((2, 3)), jnp.zeros((5, 4)))
    assert "\n" not in str(err.value)


def vq_config(update):
    cfg = ml_collections.ConfigDict()
    cfg.model = model_defaults()
    cfg.model.update(channels=(8, 16), code_dim=4, num_codes=8, codebook_update=update, codebook_decay=0.8)
    cfg.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=3e-3, ema_decay=0.9))
    return cfg


@pytest.mark.parametrize("update", ["ema", "gradient"])
def test_vqvae_family_training_lowers_the_loss(update):
    spec = DataSpec(shape=(8, 8, 1), value_range=(-1.0, 1.0), levels=256)
    family = make_family(vq_config(update), spec)
    grid = np.linspace(-1, 1, 8)
    x = np.stack([np.sin(3 * a * grid[:, None] + grid[None, :]) for a in np.linspace(0.2, 1.0, 8)])[..., None]
    batch = {"x": jnp.asarray(x, jnp.float32)}
    state = jax.jit(family.init)(jax.random.key(0), batch)
    step = jax.jit(family.train_step)
    first = None
    for i in range(30):
        state, metrics = step(state, batch, jax.random.key(i))
        first = float(metrics["recon"]) if first is None else first
    assert float(metrics["recon"]) < 0.5 * first
    assert 1.0 <= float(metrics["perplexity"]) <= 8.0
    if update == "ema":  # the codebook in params is m / Ñ of the statistics in extra
        n, m = state.extra["cluster_size"], state.extra["embed_sum"]
        smoothed = (n + 1e-5) / (n.sum() + 8e-5) * n.sum()
        np.testing.assert_allclose(state.params["codebook"], m / smoothed[:, None], rtol=1e-4, atol=1e-6)
    metrics = jax.jit(family.evaluate)(state.params, batch, jax.random.key(0))
    assert np.isfinite(float(metrics["recon"]))


def test_vqvae_rejects_bad_config():
    with pytest.raises(ConfigError, match="divisible"):
        make_family(vq_config("ema"), DataSpec(shape=(6, 6, 1)))
    with pytest.raises(ConfigError, match="codebook_update"):
        make_family(vq_config("kmeans"), DataSpec(shape=(8, 8, 1)))


def _stage1_upstream(spec, **config_changes):
    """An untrained stage-1 run as the train layer hands it over: config as a plain dict, sampling params."""
    cfg = vq_config("ema")
    init = jax.jit(make_family(cfg, spec).init)  # jitted: an eager VQ-VAE init compiles op by op (~14 s)
    state = init(jax.random.key(0), {"x": jnp.zeros((4, *spec.shape), jnp.float32)})
    config = cfg.to_dict()
    config["model"].update(config_changes)
    params = jax.tree.map(np.asarray, state.sampling_params())
    return Upstream(config=config, params=params, step=0, workdir="/runs/stage1")


def test_prior_family_builds_on_the_upstream_run_it_is_given():
    spec = DataSpec(shape=(8, 8, 1), value_range=(-1.0, 1.0), levels=256)
    cfg = vq_config("ema")
    cfg.model.update(dict(prior_of="/runs/stage1", prior_hidden=4, prior_layers=2, temperature=0.7))
    with pytest.raises(CheckpointError, match="was not loaded; train the VQ-VAE there first") as err:
        make_family(cfg, spec)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="must be a stage-1 VQ-VAE run"):
        make_family(cfg, spec, FamilyInputs(upstream={"model.prior_of": _stage1_upstream(spec, family="vae")}))
    up = _stage1_upstream(spec)
    family = make_family(cfg, spec, FamilyInputs(upstream={"model.prior_of": up}))
    assert family.name == "vqvae_prior" and family.conditioning == ()
    assert [(o.name, o.default) for o in family.sample_options] == [("temperature", 0.7)]
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)) / 127.5 - 1.0, jnp.float32)
    state = jax.jit(family.init)(jax.random.key(1), {"x": x})
    for a, b in zip(jax.tree.leaves(state.params["vqvae"]),
                    jax.tree.leaves({"net": up.params["net"], "codebook": up.params["codebook"]}), strict=True):
        np.testing.assert_array_equal(a, b)  # the stage-1 parameters it was handed, frozen
    state, metrics = jax.jit(family.train_step)(state, {"x": x}, jax.random.key(2))
    assert np.isfinite(float(metrics["loss"]))
    images, info = family.sample(state.params, jax.random.key(3), 2)
    assert images.shape == (2, 8, 8, 1) and info["nfe"] == 4  # a 2x2 code grid
    with pytest.raises(ConfigError, match="--temperature must be > 0"):
        family.sample(state.params, jax.random.key(3), 2, temperature=0.0)


def test_code_prior_log_prob_sampling_and_training():
    num_codes, grid = 6, (3, 3)
    prior = code_prior(num_codes, hidden=8, num_layers=2)
    codes = jnp.asarray(np.random.default_rng(4).integers(0, num_codes, size=(5, *grid)))
    params = code_prior_init(prior, jax.random.key(0), grid)
    # an input-independent prior: log p(codes) = Σ log softmax(b)[k]
    logits = jnp.array([0.3, -1.0, 1.2, 0.0, 0.5, -0.2])
    const = jax.tree.map(jnp.zeros_like, params)
    const["params"]["head_1"]["bias"] = logits
    log_p = jax.jit(code_prior_log_prob, static_argnums=0)(prior, const, codes)
    expected = (np.asarray(logits) - special.logsumexp(np.asarray(logits)))[np.asarray(codes)].sum((1, 2))
    np.testing.assert_allclose(log_p, expected, rtol=1e-5)
    sampled, info = jax.jit(sample_code_grid, static_argnums=(0, 3, 4))(
        prior, params, jax.random.key(1), 4, grid, jnp.float32(1.0))
    assert info["nfe"] == 9 and sampled.shape == (4, *grid) and sampled.dtype == jnp.int32
    assert int(sampled.min()) >= 0 and int(sampled.max()) < num_codes

    # maximum likelihood on a fixed set of code grids lowers their NLL
    @jax.jit
    def sgd(p):
        loss, g = jax.value_and_grad(lambda q: -jnp.mean(code_prior_log_prob(prior, q, codes)))(p)
        return jax.tree.map(lambda a, b: a - 0.05 * b, p, g), loss

    losses = []
    for _ in range(30):
        params, loss = sgd(params)
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 1.0
