"""Captioned batches (data.captions): the tokens decode to the drawn captions, which are a pure function of
(seed, step), slice by process like every other random number, never show a held-out pair, and name the
attributes measured on the very image they describe."""

import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.core.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_vocabulary, decode, normalize, split_words
from gm_jax.data import captions, data_defaults, load_arrays, make_pipeline

NAME = "fashion_mnist_small"


def config(data_dir, **fields):
    c = data_defaults()
    c.data_dir = data_dir
    c.batch_size = 16
    c.captions = True
    c.update(fields)
    return c


@pytest.fixture(scope="module")
def pipe(data_dir):
    return make_pipeline(config(data_dir), seed=11)


@pytest.fixture(scope="module")
def train_raw(data_dir):
    return load_arrays(NAME, "train", data_dir=data_dir)


def expected_words(label, brightness, size):
    """The attribute words a training caption carries: the measured ones less those forming held-out pairs."""
    pairs = captions.HELDOUT_COMBINATIONS["fashion_mnist"]
    b, s = captions.BRIGHTNESS_WORDS[brightness], captions.SIZE_WORDS[size]
    return (None if (b, label) in pairs else b), (None if (s, label) in pairs else s)


def test_tokens_decode_to_the_captions_of_the_step(pipe):
    text = pipe.spec.text
    longest = max(len(split_words(c)) for c in captions.caption_corpus(NAME))
    assert text.max_length == longest == 13 and not text.bos_eos
    assert text.vocabulary == build_vocabulary(captions.caption_corpus(NAME))
    for step in (0, 7, 400):  # 400 lies in the second epoch (312 steps each)
        batch = pipe.batch(step)
        assert batch["tokens"].dtype == np.int32 and batch["tokens"].shape == (16, 13)
        assert batch["token_mask"].dtype == np.bool_ and batch["token_mask"].shape == (16, 13)
        texts = pipe.captions_of(step)
        assert len(texts) == 16
        assert decode(text.vocabulary, batch["tokens"]) == [normalize(c) for c in texts]
    assert pipe.captions_of(0) != pipe.captions_of(1)


def test_mask_is_true_exactly_on_the_tokens(pipe, data_dir):
    batch, texts = pipe.batch(3), pipe.captions_of(3)
    mask, tokens = batch["token_mask"], batch["tokens"]
    lengths = np.array([len(split_words(c)) for c in texts])
    np.testing.assert_array_equal(mask, np.arange(13)[None] < lengths[:, None])
    np.testing.assert_array_equal(mask, tokens != PAD_ID)
    marked = make_pipeline(config(data_dir, caption_bos_eos=True), seed=11)
    assert marked.spec.text.max_length == 15 and marked.spec.text.bos_eos
    b = marked.batch(3)
    rows = np.arange(16)
    np.testing.assert_array_equal(b["token_mask"].sum(1), lengths + 2)
    assert (b["tokens"][:, 0] == BOS_ID).all() and (b["tokens"][rows, lengths + 1] == EOS_ID).all()
    assert decode(marked.spec.text.vocabulary, b["tokens"]) == [normalize(c) for c in texts]


def test_same_seed_and_step_same_tokens_and_process_slices_concatenate(pipe, data_dir):
    again = make_pipeline(config(data_dir), seed=11)
    for key in ("tokens", "token_mask", "x", "label"):
        np.testing.assert_array_equal(again.batch(5)[key], pipe.batch(5)[key])
    assert again.captions_of(5) == pipe.captions_of(5)
    other_seed = make_pipeline(config(data_dir), seed=12)
    assert other_seed.captions_of(5) != pipe.captions_of(5)
    whole = pipe.batch(9)
    parts = [make_pipeline(config(data_dir), seed=11, process_index=i, process_count=2).batch(9) for i in range(2)]
    for key in whole:
        assert parts[0][key].shape[0] == 8
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_attribute_words_are_those_measured_on_that_image(pipe, train_raw):
    thresholds = captions.fit_attribute_thresholds(train_raw.x, train_raw.label, 10)
    for key in ("brightness", "size"):
        np.testing.assert_array_equal(pipe.caption_thresholds[key], thresholds[key])
    for step in (0, 1, 2, 3):
        index = pipe.global_indices(step)
        batch = pipe.batch(step)
        # the served image is the raw one at that index (x = 2k/255 - 1)
        np.testing.assert_array_equal(np.rint((batch["x"] + 1) * 127.5).astype(np.uint8), train_raw.x[index])
        measured = captions.measure_attributes(train_raw.x[index], train_raw.label[index], thresholds)
        for i, caption in enumerate(pipe.captions_of(step)):
            label, brightness, size = captions.parse_caption(caption, NAME)
            assert label == batch["label"][i] == train_raw.label[index[i]]
            want = expected_words(label, measured["brightness"][i], measured["size"][i])
            assert (brightness, size) == want, (caption, want)


def test_heldout_pairs_never_appear_in_a_training_epoch(pipe, train_raw):
    measured = captions.measure_attributes(train_raw.x, train_raw.label, pipe.caption_thresholds)
    assert captions.heldout_mask(train_raw.label, measured, NAME).sum() > 100  # such images are there
    pairs = captions.HELDOUT_COMBINATIONS["fashion_mnist"]
    seen_words = set()
    for step in range(pipe.steps_per_epoch):  # every training example once
        for caption in pipe.captions_of(step):
            label, brightness, size = captions.parse_caption(caption, NAME)
            assert not captions.is_heldout(caption, NAME), caption
            assert (brightness, label) not in pairs and (size, label) not in pairs, caption
            seen_words.update({(brightness, label), (size, label)})
    assert ("bright", 7) in seen_words and ("large", 4) in seen_words  # other words of those classes do occur


def test_eval_batches_carry_captions_of_the_eval_split(pipe, data_dir):
    test = load_arrays(NAME, "test", data_dir=data_dir)
    measured = captions.measure_attributes(test.x, test.label, pipe.caption_thresholds)  # training cuts
    batches = pipe.eval_batches(16)
    for i in range(2):
        batch = next(batches)
        rows = slice(16 * i, 16 * (i + 1))
        rng = np.random.Generator(np.random.PCG64([11, 2**62, i, 3]))
        attrs = {k: measured[k][rows] for k in ("brightness", "size")}
        want = captions.make_captions(test.label[rows], attrs, NAME, rng=rng, split="train")
        assert decode(pipe.spec.text.vocabulary, batch["tokens"]) == [normalize(c) for c in want]
        np.testing.assert_array_equal(batch["label"], test.label[rows])
    images = pipe.eval_images(20, chunk=8)
    assert images["tokens"].shape == (20, 13) and images["token_mask"].shape == (20, 13)


def test_class_prompts_name_each_class_with_its_article(pipe):
    prompts = pipe.spec.text.class_prompts
    assert len(prompts) == 10
    assert prompts[0] == "a photo of a t-shirt" and prompts[9] == "a photo of an ankle boot"
    assert [captions.parse_caption(p, NAME) for p in prompts] == [(k, None, None) for k in range(10)]
    tokens, mask = pipe.spec.text.encode(prompts)
    assert tokens.shape == (10, 13) and mask.any(axis=1).all()


def test_names_only_and_binarized_captions(pipe, data_dir):
    plain = make_pipeline(config(data_dir, caption_attributes=False), seed=11)
    assert plain.caption_thresholds is None
    for caption in plain.captions_of(2):
        assert captions.parse_caption(caption, NAME)[1:] == (None, None)
    # attributes are measured on the raw 8-bit pixels, so a binarized run gets the same captions
    binary = make_pipeline(config(data_dir, binarize="static"), seed=11)
    assert binary.captions_of(4) == pipe.captions_of(4)
    np.testing.assert_array_equal(binary.batch(4)["tokens"], pipe.batch(4)["tokens"])
    assert set(np.unique(binary.batch(4)["x"])) <= {0.0, 1.0}


def test_too_short_max_length_and_uncaptionable_data_fail_in_one_line(data_dir):
    with pytest.raises(ConfigError, match="caption_max_length=13") as err:
        make_pipeline(config(data_dir, caption_max_length=12), seed=0)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="caption_max_length=15") as err:
        make_pipeline(config(data_dir, caption_max_length=14, caption_bos_eos=True), seed=0)
    assert "\n" not in str(err.value)
    assert make_pipeline(config(data_dir, caption_max_length=20), seed=0).batch(0)["tokens"].shape == (16, 20)
    for bad in ({"caption_max_length": -1}, {"name": "two_moons"}, {"num_examples": 20}):
        with pytest.raises(ConfigError) as err:
            make_pipeline(config(data_dir, **bad), seed=0)
        assert "\n" not in str(err.value)


def test_captions_off_leaves_batches_and_spec_as_before(pipe, data_dir):
    old_fields = {k: v for k, v in config(data_dir).items() if not k.startswith("caption")}  # a pre-caption config
    before = make_pipeline(old_fields, seed=11)
    off = make_pipeline(config(data_dir, captions=False), seed=11)
    assert off.spec == before.spec and off.spec.text is None and off.caption_thresholds is None
    assert pipe.spec.text is not None and pipe.spec.shape == off.spec.shape
    for step in (0, 6):
        b, o, c = before.batch(step), off.batch(step), pipe.batch(step)
        assert set(o) == set(b) == {"x", "label"}
        for key in b:  # captions take their own random stream: x and label are untouched
            np.testing.assert_array_equal(o[key], b[key])
            np.testing.assert_array_equal(c[key], b[key])
    assert set(next(off.eval_batches(8))) == {"x", "label"}


def test_composite_canvas_is_the_left_batch_beside_a_partner_of_another_class(pipe, data_dir, train_raw):
    two = make_pipeline(config(data_dir, composite=True), seed=11)
    assert two.spec.shape == (28, 56, 1) and two.caption_thresholds is None
    assert two.spec.text.vocabulary == pipe.spec.text.vocabulary  # the corpus holds the two-object captions
    for step in (0, 400):
        one, b = pipe.batch(step), two.batch(step)
        assert b["x"].shape == (16, 28, 56, 1) and set(b) == {"x", "label", "label_right", "tokens", "token_mask"}
        np.testing.assert_array_equal(b["x"][:, :, :28], one["x"])  # left items follow the one-object order
        np.testing.assert_array_equal(b["label"], one["label"])
        assert (b["label_right"] != b["label"]).all()
        # each right half is a training image of the class named for the right
        right = b["x"][:, :, 28:, 0]
        x = train_raw.x[..., 0].astype(np.float32) / 255 * 2 - 1
        for r, c in zip(right, b["label_right"], strict=True):
            match = np.flatnonzero(np.abs(x - r).max(axis=(1, 2)) == 0)
            assert match.size and (train_raw.label[match] == c).any()
        texts = two.captions_of(step)
        parsed = np.array([captions.parse_composite_caption(t, NAME) for t in texts])
        np.testing.assert_array_equal(parsed, np.stack([b["label"], b["label_right"]], 1))
        assert decode(two.spec.text.vocabulary, b["tokens"]) == [normalize(t) for t in texts]


def test_composite_batches_slice_by_process_and_eval_is_deterministic(data_dir):
    two = make_pipeline(config(data_dir, composite=True), seed=3)
    whole = two.batch(7)
    parts = [make_pipeline(config(data_dir, composite=True), seed=3, process_index=i, process_count=2).batch(7)
             for i in range(2)]
    for key in whole:
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
    first, again = next(two.eval_batches(10)), next(two.eval_batches(10))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert first["x"].shape == (10, 28, 56, 1) and (first["label"] != first["label_right"]).all()
    one = next(make_pipeline(config(data_dir), seed=3).eval_batches(10))
    np.testing.assert_array_equal(first["x"][:, :, :28], one["x"])


def test_composite_without_captions_fails_in_one_line(data_dir):
    with pytest.raises(ConfigError, match="data.captions=True") as err:
        make_pipeline(config(data_dir, captions=False, composite=True), seed=0)
    assert "\n" not in str(err.value)
