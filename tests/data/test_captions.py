"""Captions from labels and measured attributes: tercile cuts, templates, parsing, held-out sets and the
two-object composites."""

import itertools
import json
import os

import numpy as np
import pytest

from gm_jax.core.errors import CheckpointError, ConfigError
from gm_jax.core.tokenizer import build_vocabulary, encode, split_words
from gm_jax.data import captions as C
from gm_jax.data.builders import EMBEDDED_DIR
from gm_jax.data.idx import read_idx

DATASETS = ["fashion_mnist", "mnist"]


@pytest.fixture(scope="module")
def fashion():
    """The embedded Fashion-MNIST training subset (5000 uint8 images [N, 28, 28, 1], 500 per class)."""
    x = read_idx(os.path.join(EMBEDDED_DIR, "train-images-idx3-ubyte.gz"))[..., None]
    y = read_idx(os.path.join(EMBEDDED_DIR, "train-labels-idx1-ubyte.gz")).astype(np.int32)
    return x, y


def _every_combination(num_classes):
    """labels and attribute indices covering every (class, brightness, size) triple once."""
    triples = np.array(list(itertools.product(range(num_classes), range(3), range(3))))
    return triples[:, 0], {"brightness": triples[:, 1], "size": triples[:, 2]}


def test_attribute_values_by_hand():
    x = np.zeros((1, 2, 2, 1), np.float32)
    x[0, 0, 0, 0], x[0, 0, 1, 0], x[0, 1, 0, 0] = 0.8, 0.4, 0.05  # 0.05 is below the 0.1 foreground cut
    values = C.attribute_values(x)
    assert values["brightness"][0] == pytest.approx((0.8 + 0.4) / 2)
    assert values["size"][0] == pytest.approx((2 + (0.8 + 0.4 + 0.05) / 4) / 4)
    uint8 = np.round(x * 255).astype(np.uint8)
    np.testing.assert_allclose(C.attribute_values(uint8)["brightness"], (204 + 102) / 2 / 255)


def test_terciles_split_each_class_into_thirds(fashion):
    x, y = fashion
    thresholds = C.fit_attribute_thresholds(x, y)
    assert thresholds["brightness"].shape == thresholds["size"].shape == (10, 2)
    attributes = C.measure_attributes(x, y, thresholds)
    for c in range(10):
        n = int((y == c).sum())
        for name in ("brightness", "size"):
            counts = np.bincount(attributes[name][y == c], minlength=3)
            assert counts.sum() == n and np.all(np.abs(counts - n / 3) <= 1), (c, name, counts)
            values = attributes[f"{name}_value"][y == c]
            assert values[attributes[name][y == c] == 0].max() < values[attributes[name][y == c] == 2].min()


def test_terciles_of_synthetic_digits_and_small_classes():
    rng = np.random.default_rng(3)
    x = (rng.random((31, 8, 8, 1)) * rng.random((31, 1, 1, 1))).astype(np.float32)
    y = np.repeat(np.arange(3), [10, 11, 10])
    thresholds = C.fit_attribute_thresholds(x, y)
    attributes = C.measure_attributes(x, y, thresholds)
    for c, n in enumerate([10, 11, 10]):
        counts = np.bincount(attributes["size"][y == c], minlength=3)
        assert counts.tolist() == [n // 3, 2 * n // 3 - n // 3, n - 2 * n // 3]
    with pytest.raises(ConfigError, match="class 1 has 2 training images"):
        C.fit_attribute_thresholds(x[:13], np.array([0] * 10 + [1, 1, 2]))


def test_constant_images_measure_as_expected(fashion):
    x, y = fashion
    thresholds = C.fit_attribute_thresholds(x, y)
    labels = np.arange(10)
    bright = C.measure_attributes(np.full((10, 28, 28, 1), 255, np.uint8), labels, thresholds)
    assert C.BRIGHTNESS_WORDS[2] == "bright" and (bright["brightness"] == 2).all() and (bright["size"] == 2).all()
    dim = C.measure_attributes(np.full((10, 28, 28, 1), 0.15, np.float32), labels, thresholds)
    assert (dim["brightness"] == 0).all() and (dim["size"] == 2).all()
    blank = C.measure_attributes(np.zeros((10, 28, 28, 1), np.float32), labels, thresholds)
    assert (blank["brightness"] == 0).all() and (blank["size"] == 0).all()


def test_float_and_uint8_images_agree_and_minus_one_one_is_rejected(fashion):
    x, y = fashion
    thresholds = C.fit_attribute_thresholds(x, y)
    a = C.measure_attributes(x[:200], y[:200], thresholds)
    b = C.measure_attributes(x[:200].astype(np.float32) / 255, y[:200], thresholds)
    np.testing.assert_array_equal(a["size"], b["size"])
    np.testing.assert_array_equal(a["brightness"], b["brightness"])
    with pytest.raises(ConfigError, match=r"\(x \+ 1\) / 2"):
        C.measure_attributes(x[:4].astype(np.float32) / 127.5 - 1, y[:4], thresholds)
    with pytest.raises(ConfigError, match="labels must lie in 0..9"):
        C.measure_attributes(x[:2], np.array([0, 10]), thresholds)


def test_thresholds_json_round_trip_and_garbage(fashion):
    x, y = fashion
    thresholds = C.fit_attribute_thresholds(x[:300], y[:300])
    back = C.thresholds_from_json(json.loads(json.dumps(C.thresholds_to_json(thresholds))))
    for name in ("brightness", "size"):
        np.testing.assert_array_equal(back[name], thresholds[name])
    assert back["foreground_threshold"] == thresholds["foreground_threshold"] == C.FOREGROUND_THRESHOLD
    for garbage in [[1, 2], {"brightness": [[0, 1]]}, {**C.thresholds_to_json(thresholds), "size": "abc"},
                    {**C.thresholds_to_json(thresholds), "size": [[0.5, 0.1]] * 10},
                    {**C.thresholds_to_json(thresholds), "foreground_threshold": "x"}]:
        with pytest.raises(CheckpointError) as err:
            C.thresholds_from_json(garbage)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_template_parses_back(dataset):
    names = C.class_names(dataset)
    for template in C.TRAIN_TEMPLATES + C.HELDOUT_TEMPLATES:
        for (c, synonyms), b, s in itertools.product(enumerate(names), C.BRIGHTNESS_WORDS, C.SIZE_WORDS):
            for synonym in synonyms:
                caption = C.render_caption(template, synonym, " ".join(w for w in (s, b) if w))
                assert "  " not in caption and not caption.endswith(",")
                assert C.parse_caption(caption, dataset) == (c, b, s), caption


@pytest.mark.parametrize("dataset", DATASETS)
def test_make_captions_recovers_label_and_attributes(dataset):
    labels, attributes = _every_combination(10)
    labels, attributes = np.tile(labels, 8), {k: np.tile(v, 8) for k, v in attributes.items()}
    pairs = C.HELDOUT_COMBINATIONS[dataset]
    for split in C.SPLITS:
        captions = C.make_captions(labels, attributes, dataset, np.random.default_rng(0), split)
        for caption, c, b, s in zip(captions, labels, attributes["brightness"], attributes["size"], strict=True):
            want_b, want_s = C.BRIGHTNESS_WORDS[b], C.SIZE_WORDS[s]
            if split == "train":  # held-out pairs lose their word in training captions
                want_b, want_s = [None if (w, c) in pairs else w for w in (want_b, want_s)]
            assert C.parse_caption(caption, dataset) == (c, want_b, want_s), caption


def test_make_captions_uses_every_template_and_synonym():
    labels = np.full(400, 7)
    captions = C.make_captions(labels, None, "fashion_mnist", 1)
    starts = {c.replace("sneaker", "N").replace("trainer", "N") for c in captions}
    assert starts == {C.render_caption(t, "N") for t in C.TRAIN_TEMPLATES}
    assert {"sneaker", "trainer"} <= {w for c in captions for w in split_words(c)}


@pytest.mark.parametrize("dataset", DATASETS)
def test_no_heldout_combination_or_template_in_training_captions(dataset):
    labels, attributes = _every_combination(10)
    labels, attributes = np.tile(labels, 20), {k: np.tile(v, 20) for k, v in attributes.items()}
    pairs = C.HELDOUT_COMBINATIONS[dataset]
    train = C.make_captions(labels, attributes, dataset, 5, "train")
    for caption in train:
        c, b, s = C.parse_caption(caption, dataset)
        assert (b, c) not in pairs and (s, c) not in pairs, caption
        assert not C.is_heldout(caption, dataset), caption
    words = {w for caption in train for w in split_words(caption)}
    assert not {"drawing", "sketch", "there"} & words
    assert all(C.is_heldout(p, dataset) for p in C.make_captions(labels, attributes, dataset, 5, "heldout"))
    prompts = C.heldout_prompts(dataset)
    assert len(prompts) == len(pairs) * 8 and all(C.is_heldout(p, dataset) for p in prompts)
    assert C.is_heldout("my favourite " + C.class_names(dataset)[0][0], dataset)  # a phrasing never trained


def test_heldout_mask_marks_exactly_the_heldout_pairs():
    labels, attributes = _every_combination(10)
    mask = C.heldout_mask(labels, attributes, "fashion_mnist")
    dark_sneaker = (labels == 7) & (attributes["brightness"] == 0)
    small_coat = (labels == 4) & (attributes["size"] == 0)
    np.testing.assert_array_equal(mask, dark_sneaker | small_coat)
    assert C.HELDOUT_COMBINATIONS["fashion_mnist"] == (("dark", 7), ("small", 4))


def test_parse_errors_are_one_line():
    for caption, match in [("a photo of a cat", "names no fashion_mnist class"),
                           ("a bag and a coat", "names 2 classes"),
                           ("a dark bright bag", "conflicting brightness words")]:
        with pytest.raises(ConfigError, match=match) as err:
            C.parse_caption(caption, "fashion_mnist")
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="caption dataset"):
        C.parse_caption("a bag", "cifar10")
    assert C.parse_caption("An Ankle Boot", "fashion_mnist") == (9, None, None)  # longest synonym wins
    assert C.parse_caption("a t-shirt", "fashion_mnist")[0] == 0 and C.parse_caption("a shirt", "fashion_mnist")[0] == 6
    assert C.parse_caption("a large digit 3", "mnist") == (3, None, "large")
    assert C.render_caption("a {attrs} {name}", "one") == "a one"
    assert C.render_caption("a {attrs} {name}", "eight", "") == "an eight"


def _labelled_images(n=60, height=4, width=5):
    """Images whose every pixel is 20 * label, so a canvas half tells which label it came from."""
    labels = np.arange(n) % 10
    return np.broadcast_to((20 * labels)[:, None, None, None], (n, height, width, 1)).astype(np.uint8), labels


@pytest.mark.parametrize("dataset", DATASETS)
def test_composite_captions_name_left_and_right(dataset):
    images, labels = _labelled_images()
    canvas, left, right, captions = C.composite_pairs(images, labels, 0, 200, dataset)
    assert canvas.shape == (200, 4, 10, 1) and canvas.dtype == np.uint8 and left.dtype == right.dtype == np.int32
    np.testing.assert_array_equal(canvas[:, :, :5] // 20, np.broadcast_to(left[:, None, None, None], (200, 4, 5, 1)))
    np.testing.assert_array_equal(canvas[:, :, 5:] // 20, np.broadcast_to(right[:, None, None, None], (200, 4, 5, 1)))
    assert (left != right).all()
    for caption, a, b in zip(captions, left, right, strict=True):
        assert C.parse_composite_caption(caption, dataset) == (a, b), caption
        assert not C.is_heldout(caption, dataset)
    kinds = {("," in c, c.endswith("on the left")) for c in captions}
    assert kinds == {(False, False), (False, True), (True, False)}  # all three templates are drawn


def test_composite_example_caption_and_errors():
    assert C.parse_composite_caption("a sneaker on the left and a bag on the right", "fashion_mnist") == (7, 8)
    assert C.parse_composite_caption("a handbag on the right and an ankle boot on the left",
                                     "fashion_mnist") == (9, 8)
    with pytest.raises(ConfigError, match="does not place"):
        C.parse_composite_caption("a sneaker on the left and a bag on the left", "fashion_mnist")
    images, _ = _labelled_images(5)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        C.composite_pairs(images, np.zeros(5, int), 0, 3, "mnist")


def test_determinism_under_a_seed(fashion):
    x, y = fashion
    x, y = x[:400], y[:400]
    attributes = C.measure_attributes(x, y, C.fit_attribute_thresholds(x, y))
    first = C.make_captions(y, attributes, "fashion_mnist", np.random.default_rng(7))
    assert first == C.make_captions(y, attributes, "fashion_mnist", 7)
    assert first != C.make_captions(y, attributes, "fashion_mnist", 8)
    a, b = C.composite_pairs(x, y, 3, 50, "fashion_mnist"), C.composite_pairs(x, y, 3, 50, "fashion_mnist")
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert a[3] != C.composite_pairs(x, y, 4, 50, "fashion_mnist")[3]


@pytest.mark.parametrize("dataset", DATASETS)
def test_caption_corpus_vocabulary_encodes_every_caption(dataset):
    corpus = C.caption_corpus(dataset)
    vocab = build_vocabulary(corpus)
    longest = max(len(split_words(c)) for c in corpus)
    labels, attributes = _every_combination(10)
    texts = (C.make_captions(labels, attributes, dataset, 0) + C.make_captions(labels, attributes, dataset, 0,
             "heldout") + C.heldout_prompts(dataset) + C.composite_pairs(*_labelled_images(), 0, 50, dataset)[3])
    ids, mask = encode(vocab, texts, longest)
    assert mask.any(axis=1).all()


def test_template_words_are_not_class_or_attribute_words():
    for dataset in DATASETS:
        for template in C.TRAIN_TEMPLATES + C.HELDOUT_TEMPLATES + C.COMPOSITE_TEMPLATES:
            text = template.replace("{attrs}", "").replace("{name}", "").replace("{left}", "").replace("{right}", "")
            assert not C._mentions(split_words(text), dataset), (dataset, template)
            assert not set(split_words(text)) & {"dark", "bright", "small", "large"}
    train = C._template_skeletons("fashion_mnist", C.TRAIN_TEMPLATES)
    assert not train & C._template_skeletons("fashion_mnist", C.HELDOUT_TEMPLATES)
