"""The CLIP family: train_step's loss against a numpy InfoNCE from the model's own embeddings (and the
[lo, hi] → [-1, 1] image map), the parameter layout a downstream family rebuilds MiniCLIP from, zero-shot
accuracy driven to 1 on a toy task of class templates and captions, the logit scale held at ≤ 100, finite
evaluation metrics, the declaration (no sampling), and the one-line refusal of a dataset without captions."""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gm_jax.cli import main
from gm_jax.clip import family as clip_family
from gm_jax.clip.family import make_family, model_defaults
from gm_jax.core.errors import ConfigError
from gm_jax.core.family import DataSpec, TextSpec
from gm_jax.core.optim import make_optimizer
from gm_jax.core.tokenizer import build_vocabulary
from gm_jax.nn.clip import MiniCLIP

CONFIG = str(Path(__file__).resolve().parents[2] / "experiments" / "configs" / "clip_fashion_mnist.py")
NAMES = ("bag", "boot", "coat", "dress", "shirt", "sneaker", "sandal", "trouser")
PROMPTS = tuple(f"a photo of a {n}" for n in NAMES)
TEXT = TextSpec(build_vocabulary(PROMPTS), max_length=8, bos_eos=False, class_prompts=PROMPTS)
SPEC = DataSpec((12, 12, 3), num_classes=len(NAMES), value_range=(0.0, 1.0), name="toy", text=TEXT)
MAX_SCALE = 100.0 * (1 + 1e-6)
TEMPLATES = np.random.default_rng(0).normal(size=(len(NAMES), 12, 12, 3))


def config(lr=3e-3):
    cfg = ml_collections.ConfigDict()
    cfg.model = model_defaults()
    cfg.model.update(embed_dim=16, width=16, depth=1, num_heads=2, image_channels=(8, 16))
    cfg.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=lr, ema_decay=0.0))
    return cfg


def toy_batch(seed, n=16):
    """Each class: a fixed random colour template plus noise, captioned with its class prompt; labels drawn
    with repeats, so the batch holds duplicate captions (other rows' negatives all the same)."""
    r = np.random.default_rng(seed)
    labels = r.integers(0, len(NAMES), n)
    x = np.clip(0.5 + 0.2 * (TEMPLATES[labels] + 0.3 * r.normal(size=(n, 12, 12, 3))), 0.0, 1.0)
    tokens, mask = TEXT.encode([PROMPTS[k] for k in labels])
    return {"x": x.astype(np.float32), "label": labels.astype(np.int32), "tokens": tokens, "token_mask": mask}


@pytest.fixture(scope="module")
def fam():
    return make_family(config(), SPEC)


@pytest.fixture(scope="module")
def step(fam):
    return jax.jit(fam.train_step)


def _log_softmax_rows(a):
    a = a - a.max(axis=1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=1, keepdims=True))


def test_declaration_and_param_layout(fam):
    assert fam.name == "clip" and not fam.can_sample and fam.sample_options == () and fam.conditioning == ()
    assert clip_family.SAMPLE_OPTIONS == () and fam.evaluate is not None
    state = fam.init(jax.random.key(0), toy_batch(0))
    assert set(state.params) == {"clip"}
    assert {"image_encoder", "text_encoder", "image_proj", "text_proj", "log_inv_temperature"} <= set(
        state.params["clip"])
    # a downstream family rebuilds the module from the config's fields and the spec's text
    m = config().model
    rebuilt = MiniCLIP(vocab_size=len(TEXT.vocabulary), max_len=TEXT.max_length, embed_dim=m["embed_dim"],
                       width=m["width"], depth=m["depth"], num_heads=m["num_heads"],
                       image_channels=tuple(m["image_channels"]))
    tokens, mask = TEXT.encode(PROMPTS[:3])
    apply = jax.jit(rebuilt.apply, static_argnames="method")
    emb = apply({"params": state.params["clip"]}, tokens, mask, method="encode_text")
    assert emb.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_train_step_loss_matches_numpy_infonce(fam, step):
    state = fam.init(jax.random.key(1), toy_batch(0))
    batch = toy_batch(1)
    new_state, metrics = step(state, batch, jax.random.key(2))
    # embeddings of the same batch by the model, images mapped from [0, 1] to [-1, 1] by hand
    model = clip_family.build_model(config().model, SPEC)
    apply = jax.jit(model.apply)
    img, txt, scale = (np.asarray(a, np.float64) for a in apply({"params": state.params["clip"]},
                                                                 2.0 * batch["x"] - 1.0, batch["tokens"],
                                                                 batch["token_mask"]))
    logits = scale * img @ txt.T
    expected = -0.5 * (np.mean(np.diag(_log_softmax_rows(logits))) + np.mean(np.diag(_log_softmax_rows(logits.T))))
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["logit_scale"], 1 / 0.07, rtol=1e-5)
    strict = np.mean(np.argmax(logits, axis=1) == np.arange(len(logits)))
    np.testing.assert_allclose(metrics["retrieval_accuracy"], strict, atol=1e-6)
    assert int(new_state.step) == 1
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new_state.params, state.params)
    assert moved["clip"]["log_inv_temperature"] > 0 and moved["clip"]["image_proj"]["kernel"] > 0


def test_training_drives_zero_shot_accuracy_to_one(fam, step):
    state = fam.init(jax.random.key(3), toy_batch(0))
    held_out = toy_batch(1000)
    before = fam.evaluate(state.params, held_out, jax.random.key(0))
    scales = []
    for i in range(40):
        state, metrics = step(state, toy_batch(i + 1), jax.random.key(i))
        scales.append(float(metrics["logit_scale"]))
    after = {k: float(v) for k, v in fam.evaluate(state.params, held_out, jax.random.key(0)).items()}
    assert set(after) >= {"clip_loss", "zero_shot_accuracy", "clip_score", "logit_scale", "retrieval_accuracy"}
    assert all(np.isfinite(v) for v in after.values())
    assert float(before["zero_shot_accuracy"]) < 0.5, before
    assert after["zero_shot_accuracy"] == 1.0 and after["clip_loss"] < 0.5 * float(before["clip_loss"])
    assert after["clip_score"] > float(before["clip_score"]) and 0.0 <= after["clip_score"] <= 100.0
    # duplicate captions: the retrieved caption is always right, the strict diagonal can only be as right
    assert after["retrieval_accuracy_caption"] == 1.0 and after["retrieval_accuracy"] <= 1.0
    assert max(scales) <= MAX_SCALE


def test_logit_scale_never_exceeds_100(fam, step):
    state = fam.init(jax.random.key(4), toy_batch(0))
    params = {"clip": {**state.params["clip"], "log_inv_temperature": jnp.asarray(8.0, jnp.float32)}}  # exp(8) ≈ 2981
    state = state.replace(params=params, opt_state=make_optimizer(config().optim).init(params))
    for i in range(3):
        state, metrics = step(state, toy_batch(i), jax.random.key(i))
        np.testing.assert_allclose(metrics["logit_scale"], 100.0, rtol=1e-6)
    # exp(log 100) in float32 is 100.00001: "at most 100" up to one float32 rounding
    assert float(fam.evaluate(state.params, toy_batch(7), jax.random.key(0))["logit_scale"]) <= MAX_SCALE


def test_spec_without_text_fails_with_one_line():
    no_text = DataSpec((12, 12, 3), num_classes=8, value_range=(0.0, 1.0), name="fashion_mnist")
    with pytest.raises(ConfigError) as err:
        make_family(config(), no_text)
    message = str(err.value)
    assert "data.captions=True" in message and "\n" not in message


def test_cli_train_eval_and_sampling_refused(tmp_path, data_dir, capsys):
    workdir = str(tmp_path / "run")
    tiny = ["--config.data.name=fashion_mnist_small", f"--config.data.data_dir={data_dir}",
            "--config.data.num_examples=64", "--config.data.batch_size=16", "--config.model.image_channels=(8,16)",
            "--config.model.width=16", "--config.model.depth=1", "--config.model.num_heads=2",
            "--config.model.embed_dim=16", "--config.optim.warmup_steps=0", "--config.train.num_steps=2",
            "--config.train.checkpoint_every=1", "--config.train.log_every=1", "--config.train.progress=false",
            "--config.train.eval_batches=1"]
    assert main(["train", CONFIG, "--workdir", workdir, *tiny]) == 0
    assert main(["eval", "--workdir", workdir, "--num_batches", "1"]) == 0
    report = json.load(open(os.path.join(workdir, "eval.json")))
    assert report["step"] == 2
    assert all(np.isfinite(report[f"eval/{k}"]) for k in ("clip_loss", "clip_score", "zero_shot_accuracy"))
    assert 0.0 <= report["eval/zero_shot_accuracy"] <= 1.0
    capsys.readouterr()
    assert main(["sample", "--workdir", workdir, "--num", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gm-jax: error:") and "cannot sample" in err and "\n" not in err, err
