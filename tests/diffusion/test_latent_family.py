"""Text-to-image latent diffusion: guidance limits, the padding mask through the U-Net, the latent scale,
frozen stages, batch-size independence of samples and the one-line refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import CheckpointError, ConfigError
from gm_jax.core.family import DataSpec, FamilyInputs, TextSpec, Upstream
from gm_jax.core.tokenizer import build_vocabulary
from gm_jax.diffusion import latent_family as lf
from gm_jax.nn.kl_autoencoder import KLAutoencoder
from gm_jax.train.config import base_config

CAPTIONS = ["a dark bag", "a bright sneaker", "a small bag", "a large sneaker"]
CLASS_PROMPTS = ("a photo of a bag", "a photo of a sneaker")
VOCAB = build_vocabulary(CAPTIONS + list(CLASS_PROMPTS))
TEXT = TextSpec(VOCAB, 6, class_prompts=CLASS_PROMPTS)
SPEC = DataSpec(shape=(8, 8, 1), num_classes=2, value_range=(-1.0, 1.0), levels=256, name="toy", text=TEXT)
AE_MODEL = {"family": "kl_autoencoder", "latent_channels": 2, "channels": [8]}


def _autoencoder_params():
    net = KLAutoencoder(image_channels=1, latent_channels=2, channels=(8,))
    return jax.tree.map(np.asarray, jax.jit(net.init)(jax.random.key(1), jnp.zeros((1, 8, 8, 1)))["params"])


AE_PARAMS = _autoencoder_params()


def _config(**model):
    config = base_config()
    config.data.name = "toy"
    config.model = lf.model_defaults()
    config.model.first_stage = "runs/ae"
    config.model.unet = "tiny"
    config.model.attn_resolutions = (4,)
    config.model.num_heads = 2
    config.model.text_width = 16
    config.model.text_depth = 1
    config.model.text_heads = 2
    config.model.num_timesteps = 50
    config.model.update(model)
    return config


def _inputs(config):
    up = Upstream(config={"model": AE_MODEL, "data": config.data.to_dict()}, params={"autoencoder": AE_PARAMS},
                  step=10, workdir="runs/ae")
    return FamilyInputs(upstream={lf.FIRST_STAGE_FIELD: up})


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    tokens, mask = TEXT.encode([CAPTIONS[i % 4] for i in range(n)])
    return {"x": rng.uniform(-1, 1, (n, 8, 8, 1)).astype(np.float32), "label": np.arange(n, dtype=np.int32) % 2,
            "tokens": tokens, "token_mask": mask}


@pytest.fixture(scope="module")
def trained():
    config = _config()
    family = lf.make_family(config, SPEC, _inputs(config))
    setup = lf.build_setup(config, SPEC, _inputs(config))
    state = jax.jit(family.init)(jax.random.key(0), _batch())
    step = jax.jit(family.train_step)
    for i in range(3):
        state, metrics = step(state, _batch(seed=i), jax.random.key(10 + i))
    return family, setup, state, float(metrics["loss"])


def test_latent_scale_gives_unit_variance_on_the_first_batch():
    config = _config()
    setup = lf.build_setup(config, SPEC, _inputs(config))
    state = jax.jit(lambda k, b: lf.init(setup, k, b))(jax.random.key(0), _batch(8))
    k_z = jax.random.split(jax.random.key(0), 3)[2]
    z = jax.jit(lambda p, x: lf.encode_latents(setup, p, x, k_z))(state.params, _batch(8)["x"])
    assert float(jnp.std(z)) == pytest.approx(1.0, rel=1e-5)
    assert z.shape == (8, 4, 4, 2)


def test_training_changes_only_the_trainable_parameters(trained):
    family, _, state, loss = trained
    assert np.isfinite(loss)
    same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                        state.params["autoencoder"], AE_PARAMS)
    assert all(jax.tree.leaves(same))
    fresh = jax.jit(family.init)(jax.random.key(0), _batch())
    assert float(state.params["latent_scale"]) == float(fresh.params["latent_scale"])
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params["unet"], fresh.params["unet"])
    assert max(jax.tree.leaves(moved)) > 0
    moved_text = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params["text"],
                              fresh.params["text"])
    assert max(jax.tree.leaves(moved_text)) > 0


def _random_params(setup, state):
    """The trained state's U-Net with every zero-initialized output layer made non-zero (numpy), so that
    cross-attention and the output actually depend on the text."""
    rng = np.random.default_rng(3)
    unet = jax.tree.map(lambda a: np.asarray(a) + 0.05 * rng.standard_normal(np.shape(a)).astype(np.float32),
                        state.params["unet"])
    return {**state.params, "unet": unet}


def test_guidance_one_is_conditional_and_zero_is_the_null_prompt(trained):
    _, setup, state, _ = trained
    params = _random_params(setup, state)
    cond, null = TEXT.encode(["a dark bag", "a large sneaker"]), TEXT.encode(["", ""])
    z = jax.random.normal(jax.random.key(5), (2, 4, 4, 2))
    t, alpha, sigma = jnp.float32(20.0), jnp.float32(0.6), jnp.float32(0.8)

    @jax.jit
    def x0(w, c_tokens, c_mask):
        return lf.guided_denoiser(setup, params, (c_tokens, c_mask), null, w)(z, t, alpha, sigma)

    @jax.jit
    def plain(c_tokens, c_mask):
        net = lf.network_fn(setup, params, lf.text_context(setup, params, c_tokens, c_mask), c_mask)
        return lf.network_x0(setup.latent.kind, net, z, t, alpha, sigma, None, setup.latent.time_scale)

    np.testing.assert_allclose(x0(1.0, *cond), plain(*cond), atol=1e-5)
    np.testing.assert_allclose(x0(0.0, *cond), plain(*null), atol=1e-5)
    assert float(jnp.max(jnp.abs(plain(*cond) - plain(*null)))) > 1e-3  # the text matters
    w = 3.0
    np.testing.assert_allclose(x0(w, *cond), plain(*null) + w * (plain(*cond) - plain(*null)), atol=1e-4)


def test_appended_padding_does_not_change_the_network(trained):
    _, setup, state, _ = trained
    params = _random_params(setup, state)
    tokens, mask = TEXT.encode(["a dark bag", "a large sneaker"])
    context = lf.text_context(setup, params, tokens, mask)
    junk = jax.random.normal(jax.random.key(2), (2, 3, context.shape[-1]))
    long_context = jnp.concatenate([context, junk], 1)
    long_mask = jnp.concatenate([mask, np.zeros((2, 3), bool)], 1)
    z = jax.random.normal(jax.random.key(4), (2, 4, 4, 2))
    out = jax.jit(lambda c, m: lf.network_fn(setup, params, c, m)(z, jnp.full((2,), 7.0), None))
    np.testing.assert_allclose(out(long_context, long_mask), out(context, mask), atol=1e-5)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samples_do_not_depend_on_how_many_are_drawn_together(trained, sampler):
    family, _, state, _ = trained
    params = _random_params(None, state)
    both, info = family.sample(params, jax.random.key(7), 2, prompt=["a dark bag", "a large sneaker"],
                               sampler=sampler, steps=4, guidance=2.0)
    second, _ = family.sample(params, jax.random.key(7), 1, first_index=3, prompt="a large sneaker",
                              sampler=sampler, steps=4, guidance=2.0)
    assert both.shape == (4, 8, 8, 1) and info["nfe"] == 4
    assert float(jnp.min(both)) >= -1.0 and float(jnp.max(both)) <= 1.0
    np.testing.assert_allclose(second[0], both[3], atol=1e-5)
    assert float(jnp.max(jnp.abs(both[0] - both[1]))) > 0  # different noise per row
    classes, _ = family.sample(params, jax.random.key(7), 3, sampler=sampler, steps=4, guidance=2.0)
    bag, _ = family.sample(params, jax.random.key(7), 1, first_index=2, prompt="a photo of a bag",
                           sampler=sampler, steps=4, guidance=2.0)
    np.testing.assert_allclose(bag[0], classes[2], atol=1e-5)  # no prompt: the class prompts, cycled


def test_refusals_are_one_line(trained):
    family, _, state, _ = trained
    with pytest.raises(ConfigError, match="unknown word 'bagg'.*closest.*'bag'"):
        family.sample(state.params, jax.random.key(0), 1, prompt="a dark bagg")
    with pytest.raises(ConfigError, match="max_length is 6"):
        family.sample(state.params, jax.random.key(0), 1, prompt="a dark bag a dark bag a")
    with pytest.raises(ConfigError, match="label"):
        family.sample(state.params, jax.random.key(0), 1, prompt="a bag", label=1)
    config = _config(caption_dropout=0.0)
    no_uncond = lf.make_family(config, SPEC, _inputs(config))
    with pytest.raises(ConfigError, match="caption_dropout=0"):
        no_uncond.sample(state.params, jax.random.key(0), 1, prompt="a bag", guidance=2.0)
    with pytest.raises(ConfigError, match="caption_dropout=0"):
        no_uncond.sample(state.params, jax.random.key(0), 1, prompt="", guidance=1.0)


def test_bad_setups_are_one_line():
    config = _config()
    with pytest.raises(ConfigError, match="data.captions=True"):
        lf.make_family(config, DataSpec(shape=(8, 8, 1), num_classes=2), _inputs(config))
    with pytest.raises(CheckpointError, match="was not loaded"):
        lf.make_family(config, SPEC, FamilyInputs())
    wrong = Upstream(config={"model": {"family": "vae"}, "data": config.data.to_dict()}, params={}, step=1,
                     workdir="runs/vae")
    with pytest.raises(ConfigError, match="not a 'kl_autoencoder' run"):
        lf.make_family(config, SPEC, FamilyInputs(upstream={lf.FIRST_STAGE_FIELD: wrong}))
    other_data = Upstream(config={"model": AE_MODEL, "data": {"name": "mnist", "scale": "minus_one_one"}},
                          params={"autoencoder": AE_PARAMS}, step=1, workdir="runs/ae")
    with pytest.raises(ConfigError, match="same data"):
        lf.make_family(config, SPEC, FamilyInputs(upstream={lf.FIRST_STAGE_FIELD: other_data}))
    with pytest.raises(ConfigError, match="text_encoder"):
        lf.make_family(_config(text_encoder="bert"), SPEC, _inputs(config))


def _clip_inputs(config, vocab_size=len(VOCAB)):
    from gm_jax.nn.clip import MiniCLIP

    clip_model = {"family": "clip", "embed_dim": 8, "width": 16, "depth": 1, "num_heads": 2, "image_channels": [4]}
    net = MiniCLIP(vocab_size=vocab_size, max_len=6, embed_dim=8, width=16, depth=1, num_heads=2, image_channels=(4,))
    tokens, mask = TEXT.encode(["a bag"])
    params = jax.jit(net.init)(jax.random.key(2), jnp.zeros((1, 8, 8, 1)), tokens, mask)["params"]
    clip_up = Upstream(config={"model": clip_model, "data": config.data.to_dict()},
                       params={"clip": jax.tree.map(np.asarray, params)}, step=5, workdir="runs/clip")
    inputs = _inputs(config)
    return FamilyInputs(upstream={**inputs.upstream, lf.CLIP_FIELD: clip_up})


def test_the_frozen_clip_text_tower_conditions_and_stays_frozen():
    config = _config(text_encoder="clip", text_encoder_of="runs/clip")
    inputs = _clip_inputs(config)
    family = lf.make_family(config, SPEC, inputs)
    state = jax.jit(family.init)(jax.random.key(0), _batch())
    assert "text" not in state.params
    after, metrics = jax.jit(family.train_step)(state, _batch(seed=1), jax.random.key(3))
    assert np.isfinite(float(metrics["loss"]))
    frozen = inputs.upstream[lf.CLIP_FIELD].params["clip"]
    same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), b)), after.params["clip"], frozen)
    assert all(jax.tree.leaves(same))
    x, info = family.sample(after.params, jax.random.key(1), 2, prompt="a dark bag", steps=2, guidance=2.0)
    assert x.shape == (2, 8, 8, 1) and info["nfe"] == 2 and bool(jnp.all(jnp.isfinite(x)))
    with pytest.raises(ConfigError, match="vocabulary"):
        lf.make_family(config, SPEC, _clip_inputs(config, vocab_size=len(VOCAB) + 1))
