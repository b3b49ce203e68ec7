"""Word-level tokenizer: normalization, round trips, padding and mask, one-line errors, JSON."""

import json

import numpy as np
import pytest

from gm_jax.core.errors import CheckpointError, ConfigError
from gm_jax.core.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    Vocabulary,
    build_vocabulary,
    decode,
    encode,
    from_json,
    normalize,
    split_words,
    to_json,
)

CAPTIONS = ["A photo of a dark T-shirt.", "sneaker, small  BRIGHT", "an ankle boot!", "digit 3 on the left"]


def test_split_words_keeps_hyphenated_words_and_splits_punctuation():
    assert split_words("A T-shirt, top!  ankle-boot 3-d") == ("a", "t-shirt", ",", "top", "!", "ankle-boot", "3-d")
    assert split_words("Ｔｅｅ\tdark\n") == ("tee", "dark")  # NFKC folds full-width letters
    assert split_words("<pad>") == ("<", "pad", ">")  # special tokens cannot come from text
    assert normalize("  Sneaker,small ") == "sneaker , small"


def test_vocabulary_layout():
    vocab = build_vocabulary(CAPTIONS)
    assert vocab.words[:4] == SPECIAL_TOKENS == ("<pad>", "<unk>", "<bos>", "<eos>")
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert list(vocab.content_words) == sorted(set(w for c in CAPTIONS for w in split_words(c)))
    assert vocab.lookup("t-shirt") == vocab.words.index("t-shirt") and vocab.lookup("zebra") is None
    assert len(build_vocabulary(["a a b", "a c"], min_count=2).content_words) == 1


@pytest.mark.parametrize("bos_eos", [False, True])
def test_round_trip_padding_and_mask(bos_eos):
    vocab = build_vocabulary(CAPTIONS)
    ids, mask = encode(vocab, CAPTIONS, 12, bos_eos=bos_eos)
    assert ids.shape == mask.shape == (4, 12) and ids.dtype == np.int32 and mask.dtype == bool
    assert decode(vocab, ids) == [normalize(c) for c in CAPTIONS]
    for row, m, caption in zip(ids, mask, CAPTIONS, strict=True):
        n = len(split_words(caption)) + 2 * bos_eos
        np.testing.assert_array_equal(m, np.arange(12) < n)  # real tokens first, then padding
        assert (row[n:] == PAD_ID).all() and (row[:n] != PAD_ID).all()
        if bos_eos:
            assert row[0] == BOS_ID and row[n - 1] == EOS_ID
        assert [vocab.words[t] for t in row[bos_eos:n - bos_eos]] == list(split_words(caption))
    assert decode(vocab, ids[1]) == [normalize(CAPTIONS[1])]  # one row as [L]


def test_single_string_and_empty_prompt():
    vocab = build_vocabulary(CAPTIONS)
    ids, mask = encode(vocab, "dark sneaker", 3)
    assert ids.shape == (1, 3) and mask.tolist() == [[True, True, False]]
    ids, mask = encode(vocab, [""], 3)
    assert not mask.any() and decode(vocab, ids) == [""]


def test_prompt_longer_than_max_length_is_one_line():
    vocab = build_vocabulary(CAPTIONS)
    assert len(split_words(CAPTIONS[0])) == 7
    encode(vocab, CAPTIONS[0], 7)  # exactly fits
    with pytest.raises(ConfigError) as err:
        encode(vocab, ["dark", CAPTIONS[0]], 6)
    message = str(err.value)
    assert "\n" not in message and "prompt 1" in message and "7 tokens" in message and "max_length is 6" in message
    with pytest.raises(ConfigError, match="9 tokens with <bos>/<eos>"):
        encode(vocab, CAPTIONS[0], 8, bos_eos=True)


def test_unknown_word_names_the_closest_words():
    vocab = build_vocabulary(CAPTIONS + ["sneakers", "speaker"])
    with pytest.raises(ConfigError) as err:
        encode(vocab, ["a dark sneakr"], 8)
    message = str(err.value)
    assert "\n" not in message and "'sneakr'" in message and "'sneaker'" in message and "'sneakers'" in message
    with pytest.raises(ConfigError, match="no vocabulary word is close"):
        encode(vocab, "qqqqqq", 8)
    ids, mask = encode(vocab, "a dark sneakr", 8, unknown="unk")
    assert ids[0, 2] == UNK_ID and mask[0, :3].all()
    assert decode(vocab, ids) == ["a dark <unk>"]
    with pytest.raises(ConfigError, match="unknown-word policy"):
        encode(vocab, "a", 8, unknown="skip")


@pytest.mark.parametrize("max_length", [0, -1, 2.5, True])
def test_bad_max_length(max_length):
    with pytest.raises(ConfigError, match="max_length"):
        encode(build_vocabulary(CAPTIONS), "a", max_length)


def test_decode_rejects_ids_outside_the_vocabulary():
    vocab = build_vocabulary(CAPTIONS)
    with pytest.raises(ConfigError, match=f"token id {len(vocab)} is outside"):
        decode(vocab, [[4, len(vocab)]])
    with pytest.raises(ConfigError, match="token id -1"):
        decode(vocab, [-1])


def test_json_round_trip():
    vocab = build_vocabulary(CAPTIONS)
    text = json.dumps(to_json(vocab))
    assert from_json(json.loads(text)) == vocab and from_json(text) == vocab
    ids, _ = encode(vocab, CAPTIONS, 12)
    np.testing.assert_array_equal(encode(from_json(text), CAPTIONS, 12)[0], ids)


@pytest.mark.parametrize("garbage", [
    "not json {", "[1, 2]", {"format": "other", "version": 1, "words": list(SPECIAL_TOKENS)},
    {"format": "gm_jax.vocabulary", "version": 2, "words": list(SPECIAL_TOKENS)},
    {"format": "gm_jax.vocabulary", "version": 1, "words": "abc"},
    {"format": "gm_jax.vocabulary", "version": 1, "words": list(SPECIAL_TOKENS) + [3]},
    {"format": "gm_jax.vocabulary", "version": 1, "words": ["a", "<pad>", "<unk>", "<bos>", "<eos>"]},
    {"format": "gm_jax.vocabulary", "version": 1, "words": list(SPECIAL_TOKENS) + ["two words"]},
    {"format": "gm_jax.vocabulary", "version": 1, "words": list(SPECIAL_TOKENS) + ["a", "a"]},
])
def test_garbage_json_is_rejected_in_one_line(garbage):
    with pytest.raises(CheckpointError) as err:
        from_json(garbage)
    assert "\n" not in str(err.value) and "vocabulary" in str(err.value)


def test_vocabulary_constructor_checks_entries():
    with pytest.raises(ConfigError, match="special tokens"):
        Vocabulary(("a",))
    with pytest.raises(ConfigError, match="not one normalized word"):
        Vocabulary(SPECIAL_TOKENS + ("Dark",))
