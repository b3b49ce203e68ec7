"""Pix2Pix, CycleGAN and SRGAN: offline task construction against numpy, one-line config errors, and two
steps of each through the training loop from its experiment config (shrunk to tiny networks)."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from gm_jax.core import DataSpec
from gm_jax.core.errors import ConfigError
from gm_jax.gan import tasks
from gm_jax.gan.image_to_image import make_family, model_defaults
from gm_jax.metrics.image_quality import psnr
from gm_jax.train.config import apply_overrides, base_config, load_config_file
from gm_jax.train.logging import read_metrics
from gm_jax.train.loop import train

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
IMAGES = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1), minval=-1.0, maxval=1.0)


def test_sobel_edges_match_scipy():
    """Gradient magnitude from scipy.ndimage.sobel (zero padding) thresholded at 0.5 -> +1 / -1."""
    x = np.asarray(IMAGES)[..., 0]
    gx = np.stack([ndimage.sobel(im, axis=1, mode="constant") for im in x])  # per image (scipy smooths every
    gy = np.stack([ndimage.sobel(im, axis=0, mode="constant") for im in x])  # other axis, batch included)
    expected = np.where(np.hypot(gx, gy) > 0.5, 1.0, -1.0)[..., None]
    np.testing.assert_array_equal(tasks.sobel_edges(IMAGES, 0.5), expected)


def test_box_mask_is_one_rectangle_of_the_requested_size():
    draw = jax.jit(tasks.random_box_mask, static_argnums=(1, 2, 3, 4, 5))
    mask = np.asarray(draw(jax.random.key(1), 64, 20, 20, 0.3, 0.6))[..., 0]
    assert set(np.unique(mask)) <= {0.0, 1.0}
    for m in mask:
        rows, cols = np.where(m == 0)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert h * w == rows.size  # the hole is exactly a filled rectangle
        assert 6 <= h <= 12 and 6 <= w <= 12
    cond = np.asarray(tasks.masked_condition(IMAGES, jnp.asarray(mask[:4, :8, :8, None])))
    np.testing.assert_array_equal(cond[..., 0], np.asarray(IMAGES)[..., 0] * mask[:4, :8, :8])
    np.testing.assert_array_equal(cond[..., 1], mask[:4, :8, :8])


def test_downsample_bicubic_and_psnr():
    x = np.asarray(IMAGES)
    np.testing.assert_allclose(tasks.downsample(IMAGES, 2), x.reshape(4, 4, 2, 4, 2, 1).mean(axis=(2, 4)),
                               rtol=1e-6)
    const = jnp.full((2, 4, 4, 1), 0.25)
    np.testing.assert_allclose(tasks.bicubic_upsample(const, 2), np.full((2, 8, 8, 1), 0.25), atol=1e-6)
    np.testing.assert_allclose(psnr(0.5 * IMAGES + 0.1, 0.5 * IMAGES), 10 * np.log10(4 / 0.01) * np.ones(4),
                               rtol=1e-4)
    # the estimate is clipped to the data range first: +2 everywhere is an error of 1 - x, not 2
    over = np.asarray(psnr(IMAGES + 2.0, IMAGES))
    np.testing.assert_allclose(over, 10 * np.log10(4 / np.mean((1 - np.asarray(IMAGES)) ** 2, axis=(1, 2, 3))),
                               rtol=1e-4)


def test_unpaired_domains_take_members_first_and_weight_fillers_zero():
    x = jnp.arange(8.0)[:, None, None, None] * jnp.ones((8, 2, 2, 1))
    label = jnp.array([3, 7, 9, 7, 1, 9, 9, 0])
    dom = tasks.unpaired_domains(x, label, (7,), (9, 1), k=4)
    np.testing.assert_array_equal(dom.a[:, 0, 0, 0], [1, 3, 0, 2])  # members 1, 3 then fillers 0, 2
    np.testing.assert_array_equal(dom.weight_a, [1, 1, 0, 0])
    np.testing.assert_array_equal(dom.b[:, 0, 0, 0], [2, 4, 5, 6])
    np.testing.assert_array_equal(dom.weight_b, [1, 1, 1, 1])
    np.testing.assert_allclose(tasks.weighted_mean(dom.a, dom.weight_a), 2.0)


@pytest.mark.parametrize("task,change", [
    ("pix2pix", {"condition": "sketch"}),
    ("pix2pix", {"l1_weight": -1.0}),
    ("cyclegan", {"domain_b": (7,)}),
    ("cyclegan", {"domain_a": (12,)}),
    ("srgan", {"scale": 3}),
    ("srgan", {"loss": "wasserstien"}),
])
def test_bad_task_config_is_one_line_config_error(task, change):
    cfg = base_config()
    cfg.model = model_defaults(task)
    cfg.model.update(change)
    with pytest.raises(ConfigError) as err:
        make_family(cfg, DataSpec(shape=(28, 28, 1), num_classes=10))
    assert "\n" not in str(err.value)


SMALL = ["--config.data.name=fashion_mnist_small", "--config.data.num_examples=64", "--config.data.batch_size=16",
         "--config.model.features=4", "--config.train.eval_batch_size=16"]
CASES = {
    "pix2pix_inpaint": ("pix2pix_fashion_mnist.py", ["--config.model.unet_depth=2", "--config.model.patch_layers=1",
                                                     "--config.model.condition=inpaint"]),
    "cyclegan": ("cyclegan_fashion_mnist.py", ["--config.model.num_blocks=1", "--config.model.patch_layers=1",
                                               "--config.model.domain_size=4", "--config.model.domain_b=(9,0)"]),
    "srgan": ("srgan_fashion_mnist.py", ["--config.model.num_blocks=1"]),
}
LOOP = ["--config.train.num_steps=2", "--config.train.checkpoint_every=2", "--config.train.log_every=1",
        "--config.train.progress=false", "--config.train.num_samples=4", "--config.train.eval_batches=1",
        "--config.train.sample_every=0", "--config.train.eval_every=0"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_task_trains_evaluates_and_samples_through_the_loop(case, tmp_path, data_dir):
    file, overrides = CASES[case]
    config = apply_overrides(load_config_file(str(CONFIGS / file)),
                             SMALL + overrides + LOOP + [f"--config.data.data_dir={data_dir}"])
    workdir = str(tmp_path / case)
    state = train(config, workdir)
    assert int(state.step) == 2
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    steps = [r for r in records if "g_loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(np.isfinite(v) for r in steps for v in r.values())
    evals = {k: v for r in records for k, v in r.items() if k.startswith("eval/")}
    assert evals and all(np.isfinite(v) for v in evals.values())
    if case == "srgan":
        assert 5 < evals["eval/psnr_bicubic"] < 60
    samples = np.load(os.path.join(workdir, "samples", "final.npz"))["samples"]
    assert samples.shape == (4, 28, 28, 1) and np.abs(samples).max() <= 1.0
    assert os.path.exists(os.path.join(workdir, "samples", "step_000002.png"))


def test_default_sources_come_from_inputs_eval_batches():
    """sample without source translates the first num eval images given by FamilyInputs.eval_batches (of the
    source domain for CycleGAN), exactly as the same images passed as source; without eval data it asks
    for source in one line."""
    from gm_jax.core.family import FamilyInputs

    spec = DataSpec(shape=(8, 8, 1), num_classes=10)
    x = np.asarray(jax.random.uniform(jax.random.key(3), (6, 8, 8, 1), minval=-1, maxval=1))
    label = np.array([7, 9, 7, 0, 9, 7])
    seen = []

    def eval_batches(batch_size):
        seen.append(batch_size)
        return iter([{"x": x, "label": label}])

    cfg = base_config()
    cfg.model = model_defaults("cyclegan")
    cfg.model.update({"features": 2, "num_blocks": 1, "patch_layers": 1})
    fam = make_family(cfg, spec, FamilyInputs(eval_batches=eval_batches))
    state = jax.jit(fam.init)(jax.random.key(0), {"x": jnp.asarray(x), "label": jnp.asarray(label)})  # eager: op by op
    key = jax.random.key(1)
    out_b, info = fam.sample(state.params, key, 2, direction="b_to_a")
    np.testing.assert_array_equal(out_b, fam.sample(state.params, key, 2, source=x[[1, 4]], direction="b_to_a")[0])
    out_a, _ = fam.sample(state.params, key, 3)
    np.testing.assert_array_equal(out_a, fam.sample(state.params, key, 3, source=x[[0, 2, 5]])[0])
    assert info == {"nfe": 1} and seen
    bare = make_family(cfg, spec)
    with pytest.raises(ConfigError) as err:
        bare.sample(state.params, key, 2)
    assert "\n" not in str(err.value)
