"""make_pipeline: batches are a pure function of (seed, step), resumable, sliced by process, one
permutation per epoch; binarization, dequantization and scaling follow their definitions."""

import jax
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError, DataError
from gm_jax.data import data_defaults, load_arrays, make_pipeline
from gm_jax.data.toy2d import TOY_VALUE_RANGES, two_moons


@pytest.fixture
def cfg(data_dir):
    c = data_defaults()
    c.data_dir = data_dir
    c.batch_size = 32
    c.num_examples = 96
    return c


def raw(data_dir, split="train"):
    return load_arrays("fashion_mnist_small", split, data_dir=data_dir)


def test_same_seed_same_batches_other_step_or_seed_differs(cfg):
    a, b = make_pipeline(cfg, seed=7), make_pipeline(cfg, seed=7)
    for step in (0, 1, 5):
        for key in ("x", "label"):
            np.testing.assert_array_equal(a.batch(step)[key], b.batch(step)[key])
    assert not np.array_equal(a.batch(0)["x"], a.batch(1)["x"])
    assert not np.array_equal(a.batch(0)["x"], make_pipeline(cfg, seed=8).batch(0)["x"])
    batch = a.batch(0)
    assert batch["x"].dtype == np.float32 and batch["x"].shape == (32, 28, 28, 1)
    assert batch["label"].dtype == np.int32 and batch["label"].shape == (32,)
    spec = a.spec
    assert (spec.shape, spec.num_classes, spec.levels, spec.binary) == ((28, 28, 1), 10, 256, False)


@pytest.mark.parametrize("transform", [{}, {"binarize": "dynamic"}, {"dequantize": True}])
def test_resumed_pipeline_gives_the_same_batch(cfg, transform):
    cfg.update(transform)
    original = make_pipeline(cfg, seed=3)
    seen = [original.batch(s) for s in range(8)]  # walk through several epochs (3 steps per epoch)
    resumed = make_pipeline(cfg, seed=3)  # rebuilt from scratch, asked directly for step 6
    for key in seen[6]:
        np.testing.assert_array_equal(resumed.batch(6)[key], seen[6][key])


@pytest.mark.parametrize("transform", [{"binarize": "dynamic"}, {"dequantize": True}])
def test_process_slices_concatenate_to_the_global_batch(cfg, transform):
    cfg.update(transform)
    whole = make_pipeline(cfg, seed=1).batch(4)
    parts = [make_pipeline(cfg, seed=1, process_index=i, process_count=4).batch(4) for i in range(4)]
    for key in whole:
        assert parts[0][key].shape[0] == 8
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_global_batch_must_divide_by_process_count(cfg):
    with pytest.raises(ConfigError) as err:
        make_pipeline(cfg, seed=0, process_index=0, process_count=3)
    assert "divide" in str(err.value) and "\n" not in str(err.value)


def test_each_epoch_visits_every_example_once(cfg, data_dir):
    pipe = make_pipeline(cfg, seed=5)
    assert pipe.num_examples == 96 and pipe.steps_per_epoch == 3
    images = raw(data_dir).x[:96]
    # identify each served example by its pixels (the 96 images are distinct)
    lookup = {img.tobytes(): i for i, img in enumerate(images)}
    assert len(lookup) == 96
    epochs = []
    for epoch in range(2):
        served = []
        for step in range(3 * epoch, 3 * epoch + 3):
            k = np.rint((pipe.batch(step)["x"] + 1) * 127.5).astype(np.uint8)  # invert 2k/255 - 1
            served += [lookup[img.tobytes()] for img in k]
        assert sorted(served) == list(range(96))
        epochs.append(served)
    assert epochs[0] != epochs[1]


def test_scales(cfg, data_dir):
    k = None
    for scale, low in (("minus_one_one", -1.0), ("zero_one", 0.0)):
        cfg.scale = scale
        pipe = make_pipeline(cfg, seed=0)
        index = pipe.global_indices(0)
        k = raw(data_dir).x[index].astype(np.float64)
        x = pipe.batch(0)["x"]
        expected = k / 255 if scale == "zero_one" else 2 * k / 255 - 1
        np.testing.assert_allclose(x, expected, atol=1e-6)
        assert pipe.spec.value_range == (low, 1.0)
        assert x.min() == low and x.max() == 1.0


def test_dequantized_values_lie_in_their_bins(cfg, data_dir):
    cfg.update({"dequantize": True, "scale": "zero_one"})
    pipe = make_pipeline(cfg, seed=2)
    x = pipe.batch(1)["x"].astype(np.float64)
    k = raw(data_dir).x[pipe.global_indices(1)].astype(np.float64)
    assert np.all(x >= k / 256) and np.all(x < (k + 1) / 256)
    u = x * 256 - k  # U[0, 1): mean 1/2, variance 1/12
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    assert not np.array_equal(x, make_pipeline(cfg, seed=2).batch(4)["x"])
    cfg.scale = "minus_one_one"
    y = make_pipeline(cfg, seed=2).batch(1)["x"]
    np.testing.assert_allclose(y, 2 * x - 1, atol=1e-6)  # same noise, other scale
    assert y.min() >= -1 and y.max() < 1


def test_static_binarization_is_fixed(cfg, data_dir):
    cfg.update({"binarize": "static", "batch_size": 96})  # one batch = the whole (permuted) subset
    pipe = make_pipeline(cfg, seed=0)
    assert pipe.spec.binary and pipe.spec.value_range == (0.0, 1.0) and pipe.spec.levels == 2
    by_example = []
    for step, seed in ((0, 0), (1, 0), (0, 9)):
        p = make_pipeline(cfg, seed=seed)
        x = np.empty((96, 28, 28, 1), np.float32)
        x[p.global_indices(step)] = p.batch(step)["x"]
        by_example.append(x)
    assert set(np.unique(by_example[0])) == {0.0, 1.0}
    # the same example gets the same bits at every step and in every run
    np.testing.assert_array_equal(by_example[0], by_example[1])
    np.testing.assert_array_equal(by_example[0], by_example[2])
    p = raw(data_dir).x[:96].astype(np.float64) / 255
    n = p.size  # pooled mean of Bernoulli(p) bits: mean p, std sqrt(sum p(1-p)) / n
    assert abs(by_example[0].mean() - p.mean()) < 5 * np.sqrt((p * (1 - p)).sum()) / n
    assert np.all(by_example[0][p == 0] == 0) and np.all(by_example[0][p == 1] == 1)


def test_dynamic_binarization_is_fresh_with_mean_pixel_over_255(cfg, data_dir):
    cfg.update({"binarize": "dynamic", "batch_size": 96})
    pipe = make_pipeline(cfg, seed=4)
    steps = 200
    total = np.zeros((96, 28, 28, 1))
    first = None
    for step in range(steps):
        x = np.empty((96, 28, 28, 1), np.float32)
        x[pipe.global_indices(step)] = pipe.batch(step)["x"]
        assert set(np.unique(x)) <= {0.0, 1.0}
        first = x if first is None else first
        total += x
    assert not np.array_equal(first, x)
    mean = total / steps
    p = raw(data_dir).x[:96].astype(np.float64) / 255
    assert np.all(mean[p == 0] == 0) and np.all(mean[p == 1] == 1)
    z = np.abs(mean - p) / np.sqrt(np.maximum(p * (1 - p), 1e-12) / steps)
    assert np.mean(z < 3) > 0.99 and z.max() < 6  # per-pixel Monte-Carlo agreement
    assert abs(mean.mean() - p.mean()) < 1e-3


def test_eval_batches_in_order_last_partial_kept(cfg, data_dir):
    cfg.num_examples = 0
    batches = list(make_pipeline(cfg, seed=0).eval_batches(300))
    assert [b["x"].shape[0] for b in batches] == [300, 300, 300, 100]
    test = raw(data_dir, "test")
    np.testing.assert_allclose(np.concatenate([b["x"] for b in batches]), test.x / 127.5 - 1, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), test.label)


def test_toy_pipeline(data_dir):
    c = data_defaults()
    c.update({"name": "two_moons", "batch_size": 16})
    pipe = make_pipeline(c, seed=11)
    assert pipe.spec.shape == (2,) and pipe.spec.levels == 0 and pipe.spec.value_range == TOY_VALUE_RANGES["two_moons"]
    expected = np.asarray(two_moons(jax.random.fold_in(jax.random.key(11), 5), 16))
    np.testing.assert_allclose(pipe.batch(5)["x"], expected, rtol=1e-6, atol=1e-6)
    assert "label" not in pipe.batch(5)
    second = make_pipeline(c, seed=11, process_index=1, process_count=2).batch(5)["x"]
    np.testing.assert_allclose(second, expected[8:], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("field,value", [("scale", "zero_to_one"), ("binarize", "yes"), ("batch_size", 0),
                                         ("num_examples", -1), ("batch_size", 1000)])
def test_bad_config_raises_one_line_config_error(cfg, field, value):
    cfg[field] = value
    with pytest.raises(ConfigError) as err:
        make_pipeline(cfg, seed=0)
    assert "\n" not in str(err.value)


def test_dequantize_with_binarize_and_unknown_name(cfg):
    cfg.update({"dequantize": True, "binarize": "static"})
    with pytest.raises(ConfigError):
        make_pipeline(cfg, seed=0)
    cfg.update({"dequantize": False, "binarize": "none", "name": "imagenet"})
    with pytest.raises(DataError):
        make_pipeline(cfg, seed=0)


@pytest.mark.parametrize("transform", [{"binarize": "dynamic"}, {"dequantize": True, "scale": "zero_one"}])
def test_eval_batches_are_deterministic_with_random_transforms(cfg, data_dir, transform):
    cfg.update(transform)
    pipe = make_pipeline(cfg, seed=0)
    first, again = list(pipe.eval_batches(40)), list(pipe.eval_batches(40))
    assert [b["x"].shape[0] for b in first] == [40, 40, 16]  # num_examples=96 limits the eval split too
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
    x = np.concatenate([b["x"] for b in first]).astype(np.float64)
    k = raw(data_dir, "test").x[:96].astype(np.float64)
    if "binarize" in transform:
        assert set(np.unique(x)) == {0.0, 1.0} and np.all(x[k == 0] == 0) and np.all(x[k == 255] == 1)
    else:
        assert np.all(x >= k / 256) and np.all(x < (k + 1) / 256)
