"""A word-level tokenizer for short prompts: normalization, a vocabulary, encode/decode and JSON.

Normalization (:func:`split_words`): Unicode NFKC, lowercase, then the text is split into tokens, each
either a *word* -- a run of letters and digits, where runs joined by single hyphens stay one word
("t-shirt", "close-up") -- or a single punctuation mark ("," "." "!" ...). Whitespace separates tokens and
is dropped. The normalized text (:func:`normalize`) is the tokens joined by single spaces, so
``decode(vocab, encode(vocab, [x], L)[0])[0] == normalize(x)`` for every ``x`` whose words are all known.

Vocabulary: token id ``i`` is ``words[i]``. The first four ids are the special tokens
``<pad>`` = 0 (padding, mask False), ``<unk>`` = 1 (a word outside the vocabulary, with ``unknown='unk'``),
``<bos>`` = 2 and ``<eos>`` = 3 (put around a prompt only with ``bos_eos=True``: a CLIP-style text encoder
(Radford et al. 2021) may pool the ``<eos>`` position, and a row is then never all padding). Their
spellings cannot come out of :func:`split_words` ("<pad>" splits into "<", "pad", ">"), so no text can
produce them. The other words follow in sorted order (:func:`build_vocabulary`).

Pure Python and numpy; no JAX. :func:`to_json` / :func:`from_json` give a JSON-ready dict to save beside a
checkpoint.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from gm_jax.core.errors import CheckpointError, ConfigError, check_choice, require

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
UNKNOWN_POLICIES = ("error", "unk")
JSON_FORMAT = "gm_jax.vocabulary"
JSON_VERSION = 1

# a word: letters/digits (not "_"), hyphen-joined runs kept together; else one punctuation mark
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*|[^\w\s]|_")


def split_words(text: str) -> tuple[str, ...]:
    """The tokens of ``text``: NFKC, lowercase, words (hyphenated runs kept whole) and punctuation marks."""
    if not isinstance(text, str):
        raise ConfigError(f"a prompt must be a string, got {type(text).__name__}; pass text")
    return tuple(_TOKEN.findall(unicodedata.normalize("NFKC", text).lower()))


def normalize(text: str) -> str:
    """The normalized form of ``text``: its tokens (:func:`split_words`) joined by single spaces."""
    return " ".join(split_words(text))


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Token id ``i`` is ``words[i]``; ``words[:4]`` are :data:`SPECIAL_TOKENS` (pad 0, unk 1, bos 2, eos 3).

    Every other entry is one normalized word (``split_words(w) == (w,)``), each at most once.
    """

    words: tuple[str, ...]
    _ids: dict = dataclasses.field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        words = tuple(self.words)
        require(words[:len(SPECIAL_TOKENS)] == SPECIAL_TOKENS,
                f"a vocabulary must start with the special tokens {', '.join(SPECIAL_TOKENS)}; "
                f"build it with build_vocabulary")
        for word in words[len(SPECIAL_TOKENS):]:
            ok = isinstance(word, str) and split_words(word) == (word,)
            require(ok, f"vocabulary entry {word!r} is not one normalized word; build it with build_vocabulary")
        counts = collections.Counter(words)
        repeated = sorted(w for w, c in counts.items() if c > 1)
        require(not repeated, f"vocabulary repeats {', '.join(map(repr, repeated))}; list each word once")
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "_ids", {w: i for i, w in enumerate(words)})

    def __len__(self) -> int:
        return len(self.words)

    @property
    def content_words(self) -> tuple[str, ...]:
        """The words after the special tokens."""
        return self.words[len(SPECIAL_TOKENS):]

    def lookup(self, word: str) -> int | None:
        """The id of ``word``, or ``None`` when it is not in the vocabulary."""
        return self._ids.get(word)


def build_vocabulary(captions: Iterable[str], min_count: int = 1) -> Vocabulary:
    """The special tokens, then every token occurring at least ``min_count`` times in ``captions``, sorted."""
    require(isinstance(min_count, (int, np.integer)) and not isinstance(min_count, bool) and min_count >= 1,
            f"min_count must be an integer >= 1, got {min_count!r}")
    counts = collections.Counter(w for caption in captions for w in split_words(caption))
    return Vocabulary(SPECIAL_TOKENS + tuple(sorted(w for w, c in counts.items() if c >= min_count)))


def _unknown_word_message(vocab: Vocabulary, word: str, index: int) -> str:
    """One line naming an unknown word and its closest vocabulary words (difflib's ratio)."""
    close = difflib.get_close_matches(word, vocab.content_words, n=3, cutoff=0.6)
    hint = (f"closest vocabulary words: {', '.join(map(repr, close))}" if close else
            f"no vocabulary word is close (it has {len(vocab.content_words)} words)")
    return f"unknown word {word!r} in prompt {index}; {hint}; reword the prompt or pass unknown='unk'"


def _prompt_ids(vocab: Vocabulary, text: str, index: int, unknown: str, bos_eos: bool) -> list[int]:
    """The token ids of one prompt (with ``<bos>``/``<eos>`` around it when ``bos_eos``)."""
    ids = []
    for word in split_words(text):
        token = vocab.lookup(word)
        if token is None:
            if unknown == "error":
                raise ConfigError(_unknown_word_message(vocab, word, index))
            token = UNK_ID
        ids.append(token)
    return [BOS_ID, *ids, EOS_ID] if bos_eos else ids


def _preview(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[:width] + "...")


def encode(vocab: Vocabulary, texts: str | Sequence[str], max_length: int, unknown: str = "error",
           bos_eos: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask of ``texts``, padded with ``<pad>`` (id 0) to ``max_length``.

    Returns ``(ids int32 [N, max_length], mask bool [N, max_length])``; ``mask`` is True exactly on the
    prompt's tokens (``<bos>``/``<eos>`` included), which come first. A single string counts as one prompt.
    ``unknown='error'`` rejects a word outside the vocabulary with one line naming the closest words;
    ``unknown='unk'`` maps it to ``<unk>``. A prompt with more than ``max_length`` tokens is a ConfigError.
    An empty prompt without ``bos_eos`` gives an all-False mask row.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    require(isinstance(max_length, (int, np.integer)) and not isinstance(max_length, bool) and max_length >= 1,
            f"max_length must be an integer >= 1, got {max_length!r}")
    check_choice("unknown-word policy", unknown, UNKNOWN_POLICIES)
    ids = np.full((len(texts), int(max_length)), PAD_ID, np.int32)
    mask = np.zeros((len(texts), int(max_length)), bool)
    for i, text in enumerate(texts):
        row = _prompt_ids(vocab, text, i, unknown, bos_eos)
        require(len(row) <= max_length,
                f"prompt {i} {_preview(text)} has {len(row)} tokens{' with <bos>/<eos>' if bos_eos else ''} "
                f"but max_length is {max_length}; shorten the prompt or raise max_length to {len(row)}")
        ids[i, :len(row)] = row
        mask[i, :len(row)] = True
    return ids, mask


def decode(vocab: Vocabulary, ids: Any) -> list[str]:
    """The normalized text of each row of ``ids`` ([N, L], or [L] as one row), without pad/bos/eos tokens.

    ``<unk>`` stays visible as the word "<unk>". An id outside the vocabulary is a ConfigError.
    """
    array = np.asarray(ids)
    array = array[None] if array.ndim == 1 else array
    require(array.ndim == 2 and (array.size == 0 or np.issubdtype(array.dtype, np.integer)),
            f"ids must be integers of shape [N, L] or [L], got {array.dtype} of shape {np.shape(ids)}")
    if array.size:
        bad = (array < 0) | (array >= len(vocab))
        if bad.any():
            raise ConfigError(f"token id {int(array[bad][0])} is outside the vocabulary of {len(vocab)} words; "
                              f"decode with the vocabulary the ids were encoded with")
    skip = {PAD_ID, BOS_ID, EOS_ID}
    return [" ".join(vocab.words[t] for t in row.tolist() if t not in skip) for row in array]


def to_json(vocab: Vocabulary) -> dict:
    """A JSON-ready dict of ``vocab`` (``json.dump`` it beside a checkpoint): format, version and words."""
    return {"format": JSON_FORMAT, "version": JSON_VERSION, "words": list(vocab.words)}


def from_json(data: dict | str) -> Vocabulary:
    """The vocabulary saved by :func:`to_json` (the dict, or its JSON text); one-line CheckpointError if not."""
    fix = "save it again with gm_jax.core.tokenizer.to_json"
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as err:
            raise CheckpointError(f"vocabulary file is not JSON ({str(err).splitlines()[0]}); {fix}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"vocabulary JSON must be an object, got {type(data).__name__}; {fix}")
    if data.get("format") != JSON_FORMAT or data.get("version") != JSON_VERSION:
        raise CheckpointError(f"vocabulary JSON has format {data.get('format')!r} version {data.get('version')!r}, "
                              f"expected {JSON_FORMAT!r} version {JSON_VERSION}; {fix}")
    words = data.get("words")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise CheckpointError(f"vocabulary JSON 'words' must be a list of strings; {fix}")
    try:
        return Vocabulary(tuple(words))
    except ConfigError as err:
        raise CheckpointError(f"vocabulary JSON is invalid: {err}") from None
