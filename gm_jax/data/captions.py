"""(image, caption) pairs for Fashion-MNIST and MNIST, from the label and from attributes measured on the image.

A caption names the class (one of its synonyms, drawn per example) and up to two attribute words, in one
of several templates drawn per example by a seeded ``np.random.Generator``::

    "a photo of a small dark sneaker"   "an image of a bag"   "trousers, large bright"

Attributes, measured on pixels ``x`` in [0, 1] (uint8 ``k`` is read as ``k / 255``):

- foreground: the pixels with ``x > foreground_threshold`` (default :data:`FOREGROUND_THRESHOLD` = 0.1,
  i.e. uint8 values >= 26; every channel counts as a pixel);
- brightness value: the mean of ``x`` over the foreground (0 when there is none), so a large item is not
  "bright" for its size alone;
- size value: ``(foreground count + mean of x over the whole image) / number of pixels``: the foreground
  area as a fraction of the canvas, ties of the integer count broken by the overall intensity (which lies
  in [0, 1], so the order of different counts is kept).

Each value is cut into terciles *per class* on the training set (:func:`fit_attribute_thresholds`): index
0 below the lower cut ("dark", "small"), 1 between (no word), 2 above the upper cut ("bright", "large").
Each cut lies half-way between two neighbouring sorted values, so the thirds hold ``n // 3``,
``2n // 3 - n // 3`` and the rest of the ``n`` images of the class. The cuts are data: save them
(:func:`thresholds_to_json`) and measure generated images with the same :func:`measure_attributes`.

Held-out evaluation: :data:`HELDOUT_TEMPLATES` and the (attribute word, class) pairs of
:data:`HELDOUT_COMBINATIONS` never occur in captions made with ``split='train'`` (an example whose
measured attributes form such a pair loses that word there; :func:`heldout_mask` marks these examples so
a training set can leave them out). :func:`is_heldout` says whether a caption could not have come from
the training captions. :func:`composite_pairs` puts two items side by side with position words.

Pure numpy and deterministic given the generator's seed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from gm_jax.core.errors import CheckpointError, ConfigError, check_choice, require
from gm_jax.core.tokenizer import split_words

FASHION_MNIST_NAMES = (("t-shirt", "tee", "top"), ("trousers", "pants"), ("pullover", "sweater"), ("dress",),
                       ("coat",), ("sandal",), ("shirt",), ("sneaker", "trainer"), ("bag", "handbag"),
                       ("ankle boot", "boot"))
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MNIST_NAMES = tuple((word, f"digit {i}") for i, word in enumerate(_DIGITS))
_KIND = {"fashion_mnist": "fashion_mnist", "fashion_mnist_small": "fashion_mnist", "mnist": "mnist",
         "digits": "mnist"}
CLASS_NAMES = {"fashion_mnist": FASHION_MNIST_NAMES, "mnist": MNIST_NAMES}
BRIGHTNESS_WORDS = ("dark", None, "bright")
SIZE_WORDS = ("small", None, "large")
FOREGROUND_THRESHOLD = 0.1
TRAIN_TEMPLATES = ("a photo of a {attrs} {name}", "a {attrs} {name}", "{name}, {attrs}",
                   "an image of a {attrs} {name}", "a picture of a {attrs} {name}")
HELDOUT_TEMPLATES = ("a drawing of a {attrs} {name}", "there is a {attrs} {name}", "a sketch of a {attrs} {name}")
COMPOSITE_TEMPLATES = ("a {left} on the left and a {right} on the right",
                       "a {right} on the right and a {left} on the left",
                       "{left} on the left, {right} on the right")
HELDOUT_COMBINATIONS = {"fashion_mnist": (("dark", 7), ("small", 4)),  # dark sneaker, small coat
                        "mnist": (("dark", 3), ("small", 8))}
SPLITS = ("train", "heldout")
_ARTICLE = re.compile(r"\ba (?=(?!one\b)[aeiou])")  # "a ankle boot" -> "an ankle boot" ("a one" stays)
_MARK = "{}"  # stands for a class mention in a caption's skeleton


def _kind(dataset: str) -> str:
    check_choice("caption dataset", dataset, _KIND)
    return _KIND[dataset]


def class_names(dataset: str) -> tuple[tuple[str, ...], ...]:
    """The synonyms of each class of ``dataset`` (the first is the canonical name)."""
    return CLASS_NAMES[_kind(dataset)]


def _unit_pixels(images: Any) -> np.ndarray:
    """``images`` [N, H, W] or [N, H, W, C] as float64 [N, P] in [0, 1]: uint8 / 255, floats clipped."""
    x = np.asarray(images)
    require(x.ndim in (3, 4), f"images must have shape [N, H, W, C] or [N, H, W], got {x.shape}")
    flat = x.reshape(x.shape[0], -1)
    if x.dtype == np.uint8:
        return flat / 255.0
    require(np.issubdtype(x.dtype, np.floating), f"images must be uint8 or float, got {x.dtype}")
    require(bool(np.isfinite(flat).all()), "images hold NaN or infinite values; pass finite pixels")
    low, high = (float(flat.min()), float(flat.max())) if flat.size else (0.0, 1.0)
    require(low >= -0.25 and high <= 1.25,
            f"float images must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]; map [-1, 1] images "
            f"with (x + 1) / 2 and 0..255 floats with x / 255")
    return np.clip(flat.astype(np.float64), 0.0, 1.0)


def attribute_values(images: Any, foreground_threshold: float = FOREGROUND_THRESHOLD) -> dict[str, np.ndarray]:
    """Brightness and size values (float64 [N]) of each image, as defined in the module docstring."""
    x = _unit_pixels(images)
    foreground = x > foreground_threshold
    count = foreground.sum(axis=1)
    brightness = np.where(count > 0, (x * foreground).sum(axis=1) / np.maximum(count, 1), 0.0)
    size = (count + x.mean(axis=1)) / max(x.shape[1], 1)
    return {"brightness": brightness, "size": size}


def _check_labels(labels: Any, n: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    require(y.shape == (n,) and (n == 0 or np.issubdtype(y.dtype, np.integer)),
            f"labels must be integers of shape [{n}], got {y.dtype} of shape {y.shape}")
    require(n == 0 or (y.min() >= 0 and y.max() < num_classes),
            f"labels must lie in 0..{num_classes - 1}, got {y.min() if n else ''}..{y.max() if n else ''}")
    return y.astype(np.int64)


def _tercile_cuts(values: np.ndarray) -> tuple[float, float]:
    """Cuts half-way between sorted neighbours that leave ``n // 3`` values below the lower and
    ``n - 2n // 3`` above the upper one."""
    v = np.sort(values)
    n = v.shape[0]
    k1, k2 = n // 3, (2 * n) // 3
    return float((v[k1 - 1] + v[k1]) / 2), float((v[k2 - 1] + v[k2]) / 2)


def fit_attribute_thresholds(images: Any, labels: Any, num_classes: int | None = None,
                             foreground_threshold: float = FOREGROUND_THRESHOLD) -> dict[str, Any]:
    """Per-class tercile cuts of the brightness and size values of a training set.

    Returns ``{"brightness": float64 [C, 2], "size": float64 [C, 2], "foreground_threshold": float}``
    (row c: lower and upper cut of class c). ``num_classes`` defaults to ``max(labels) + 1``; every class
    needs at least 3 images.
    """
    values = attribute_values(images, foreground_threshold)
    n = values["size"].shape[0]
    require(n > 0, "fit_attribute_thresholds needs training images; pass a non-empty set")
    num_classes = int(np.max(labels)) + 1 if num_classes is None else int(num_classes)
    y = _check_labels(labels, n, num_classes)
    cuts = {"brightness": np.zeros((num_classes, 2)), "size": np.zeros((num_classes, 2))}
    for c in range(num_classes):
        members = y == c
        require(int(members.sum()) >= 3, f"class {c} has {int(members.sum())} training images; attribute "
                                          f"terciles need at least 3 per class")
        for name in cuts:
            cuts[name][c] = _tercile_cuts(values[name][members])
    return {**cuts, "foreground_threshold": float(foreground_threshold)}


def thresholds_to_json(thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready copy of :func:`fit_attribute_thresholds`' result (arrays as nested lists)."""
    t = check_thresholds(thresholds)
    return {"brightness": t["brightness"].tolist(), "size": t["size"].tolist(),
            "foreground_threshold": t["foreground_threshold"]}


def thresholds_from_json(data: Any) -> dict[str, Any]:
    """The thresholds saved by :func:`thresholds_to_json`; a one-line CheckpointError when they are not."""
    try:
        return check_thresholds(data)
    except ConfigError as err:
        raise CheckpointError(f"attribute thresholds JSON is invalid: {err}") from None


def check_thresholds(thresholds: Any) -> dict[str, Any]:
    """``thresholds`` (arrays or nested lists) as float64 [C, 2] arrays with lower <= upper cuts."""
    fix = "pass the result of fit_attribute_thresholds"
    require(isinstance(thresholds, Mapping) and {"brightness", "size", "foreground_threshold"} <= set(thresholds),
            f"attribute thresholds need keys brightness, size and foreground_threshold; {fix}")
    out = {}
    for name in ("brightness", "size"):
        try:
            cuts = np.asarray(thresholds[name], np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"attribute thresholds {name!r} are not numbers; {fix}") from None
        require(cuts.ndim == 2 and cuts.shape[1] == 2 and cuts.shape[0] >= 1 and bool(np.isfinite(cuts).all()),
                f"attribute thresholds {name!r} must be finite of shape [C, 2], got shape {cuts.shape}; {fix}")
        require(bool((cuts[:, 0] <= cuts[:, 1]).all()), f"attribute thresholds {name!r} have a lower cut above "
                                                        f"the upper one; {fix}")
        out[name] = cuts
    require(out["brightness"].shape == out["size"].shape, f"brightness and size thresholds differ in shape; {fix}")
    fg = thresholds["foreground_threshold"]
    require(isinstance(fg, (int, float, np.floating)) and 0.0 <= float(fg) < 1.0,
            f"foreground_threshold must be a number in [0, 1), got {fg!r}; {fix}")
    return {**out, "foreground_threshold": float(fg)}


def measure_attributes(images: Any, labels: Any, thresholds: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Attribute word indices of each image against the cuts of its class ``labels[i]``.

    Returns ``{"brightness": int32 [N], "size": int32 [N]}`` (index into :data:`BRIGHTNESS_WORDS` /
    :data:`SIZE_WORDS`: 0 low, 1 middle, 2 high) and the raw values as ``"brightness_value"`` and
    ``"size_value"`` (float64 [N]). For generated images pass the prompted class as the label.
    """
    t = check_thresholds(thresholds)
    values = attribute_values(images, t["foreground_threshold"])
    y = _check_labels(labels, values["size"].shape[0], t["size"].shape[0])
    out = {}
    for name in ("brightness", "size"):
        v, cuts = values[name], t[name][y]
        out[name] = ((v > cuts[:, 0]).astype(np.int32) + (v > cuts[:, 1])).astype(np.int32)
        out[f"{name}_value"] = v
    return out


def _attribute_indices(attributes: Mapping[str, Any] | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Brightness and size word indices ([N] each, 1 = no word), all 1 when ``attributes`` is None."""
    if attributes is None:
        return np.ones(n, np.int64), np.ones(n, np.int64)
    out = []
    for name in ("brightness", "size"):
        require(isinstance(attributes, Mapping) and name in attributes,
                f"attributes need key {name!r}; pass the result of measure_attributes or None")
        a = np.asarray(attributes[name])
        require(a.shape == (n,) and (n == 0 or (np.issubdtype(a.dtype, np.integer) and a.min() >= 0 and a.max() <= 2)),
                f"attributes[{name!r}] must be word indices 0..2 of shape [{n}], got {a.dtype} {a.shape}")
        out.append(a.astype(np.int64))
    return out[0], out[1]


def heldout_mask(labels: Any, attributes: Mapping[str, Any], dataset: str) -> np.ndarray:
    """bool [N]: whether example i's measured attributes form a pair of :data:`HELDOUT_COMBINATIONS`."""
    kind = _kind(dataset)
    n = np.asarray(labels).shape[0] if np.ndim(labels) else -1
    y = _check_labels(labels, n, len(CLASS_NAMES[kind]))
    brightness, size = _attribute_indices(attributes, n)
    words = (np.asarray(BRIGHTNESS_WORDS, object)[brightness], np.asarray(SIZE_WORDS, object)[size])
    mask = np.zeros(n, bool)
    for word, c in HELDOUT_COMBINATIONS[kind]:
        mask |= (y == c) & ((words[0] == word) | (words[1] == word))
    return mask


def render_caption(template: str, name: str, attrs: str = "") -> str:
    """``template`` filled with a class name and an attribute phrase ("" drops the phrase and its comma),
    with "a" before a vowel written "an"."""
    if not attrs:
        template = template.replace(", {attrs}", "").replace("{attrs} ", "")
    return _ARTICLE.sub("an ", template.format(name=name, attrs=attrs))


def _phrase(brightness: str | None, size: str | None, label: int, pairs: tuple, drop_heldout: bool) -> str:
    """The attribute phrase "size brightness", without words forming a held-out pair when ``drop_heldout``."""
    words = [w for w in (size, brightness) if w is not None and not (drop_heldout and (w, label) in pairs)]
    return " ".join(words)


def make_captions(labels: Any, attributes: Mapping[str, Any] | None, dataset: str, rng: Any,
                  split: str = "train") -> list[str]:
    """One caption per example: a template of ``split`` and a synonym of the class, each drawn by ``rng``.

    ``attributes``: :func:`measure_attributes`' result (or None: names only). ``rng``: an
    ``np.random.Generator`` (advanced) or a seed. ``split='train'`` uses :data:`TRAIN_TEMPLATES` and drops
    attribute words that would form a held-out pair; ``'heldout'`` uses :data:`HELDOUT_TEMPLATES` and keeps
    every measured word.
    """
    kind = _kind(dataset)
    check_choice("caption split", split, SPLITS)
    names = CLASS_NAMES[kind]
    n = np.asarray(labels).shape[0] if np.ndim(labels) else -1
    y = _check_labels(labels, n, len(names))
    brightness, size = _attribute_indices(attributes, n)
    rng = np.random.default_rng(rng)
    templates = TRAIN_TEMPLATES if split == "train" else HELDOUT_TEMPLATES
    template_index = rng.integers(0, len(templates), n)
    synonym_draw = rng.random(n)
    pairs = HELDOUT_COMBINATIONS[kind]
    captions = []
    for i in range(n):
        synonyms = names[y[i]]
        name = synonyms[int(synonym_draw[i] * len(synonyms))]
        attrs = _phrase(BRIGHTNESS_WORDS[brightness[i]], SIZE_WORDS[size[i]], int(y[i]), pairs, split == "train")
        captions.append(render_caption(templates[template_index[i]], name, attrs))
    return captions


@functools.lru_cache(maxsize=4)
def _synonym_tokens(kind: str) -> tuple[tuple[tuple[str, ...], int], ...]:
    """(token sequence, class) of every synonym, longest first (so "ankle boot" wins over "boot")."""
    entries = [(split_words(s), c) for c, synonyms in enumerate(CLASS_NAMES[kind]) for s in synonyms]
    return tuple(sorted(entries, key=lambda e: -len(e[0])))


def _mentions(tokens: tuple[str, ...], kind: str) -> list[tuple[int, int, int]]:
    """(start, end, class) of each class mention in ``tokens``, scanned left to right, longest match first."""
    found, i = [], 0
    while i < len(tokens):
        match = next(((s, c) for s, c in _synonym_tokens(kind) if tokens[i:i + len(s)] == s), None)
        if match is None:
            i += 1
        else:
            found.append((i, i + len(match[0]), match[1]))
            i += len(match[0])
    return found


_ATTRIBUTE_WORDS = {w for w in BRIGHTNESS_WORDS + SIZE_WORDS if w is not None}


def _skeleton(tokens: tuple[str, ...], mentions: list[tuple[int, int, int]]) -> tuple[str, ...]:
    """The caption's template words: mentions replaced by a mark, attribute words dropped, "an" -> "a"."""
    starts = {m[0]: m[1] for m in mentions}
    out, i = [], 0
    while i < len(tokens):
        if i in starts:
            out.append(_MARK)
            i = starts[i]
            continue
        if tokens[i] not in _ATTRIBUTE_WORDS:
            out.append("a" if tokens[i] == "an" else tokens[i])
        i += 1
    return tuple(out)


def _preview(caption: str) -> str:
    return repr(caption if len(caption) <= 60 else caption[:60] + "...")


def _one_word(tokens: tuple[str, ...], words: tuple, kind: str, caption: str) -> str | None:
    """The single word of ``words`` in ``tokens`` (None when there is none)."""
    present = sorted({t for t in tokens if t in words})
    require(len(present) <= 1, f"caption {_preview(caption)} has conflicting {kind} words "
                               f"{', '.join(present)}; use one")
    return present[0] if present else None


def parse_caption(caption: str, dataset: str) -> tuple[int, str | None, str | None]:
    """``(class index, brightness word or None, size word or None)`` named by a one-object caption.

    Class names are matched as whole tokens, longest synonym first; attribute words anywhere count. A
    caption naming no class, two classes or two words of one attribute is a one-line ConfigError.
    """
    kind = _kind(dataset)
    tokens = split_words(caption)
    mentions = _mentions(tokens, kind)
    require(len(mentions) > 0, f"caption {_preview(caption)} names no {dataset} class; name one of: "
                               f"{', '.join(s[0] for s in CLASS_NAMES[kind])}")
    require(len(mentions) == 1, f"caption {_preview(caption)} names {len(mentions)} classes; parse a "
                                f"two-object caption with parse_composite_caption")
    brightness = _one_word(tokens, BRIGHTNESS_WORDS, "brightness", caption)
    return mentions[0][2], brightness, _one_word(tokens, SIZE_WORDS, "size", caption)


def parse_composite_caption(caption: str, dataset: str) -> tuple[int, int]:
    """``(left class, right class)`` of a two-object caption: each mention takes the first "left" or
    "right" after it."""
    kind = _kind(dataset)
    tokens = split_words(caption)
    mentions = _mentions(tokens, kind)
    require(len(mentions) == 2, f"caption {_preview(caption)} names {len(mentions)} classes; a two-object "
                                f"caption names 2, each followed by 'on the left' or 'on the right'")
    side = {}
    for _start, end, c in mentions:
        position = next((t for t in tokens[end:] if t in ("left", "right")), None)
        require(position is not None and position not in side,
                f"caption {_preview(caption)} does not place one class on the left and one on the right")
        side[position] = c
    return side["left"], side["right"]


@functools.lru_cache(maxsize=16)
def _template_skeletons(kind: str, templates: tuple[str, ...]) -> frozenset:
    """The skeletons of ``templates`` rendered with and without an attribute phrase."""
    name = CLASS_NAMES[kind][0][0]
    out = set()
    for template in templates:
        for text in (render_caption(template, name), render_caption(template, name, "small dark")):
            tokens = split_words(text)
            out.add(_skeleton(tokens, _mentions(tokens, kind)))
    return frozenset(out)


def _composite_skeletons(kind: str) -> frozenset:
    name = CLASS_NAMES[kind][0][0]
    rendered = [t.format(left=name, right=name) for t in COMPOSITE_TEMPLATES]
    return frozenset(_skeleton(split_words(r), _mentions(split_words(r), kind)) for r in rendered)


def is_heldout(caption: str, dataset: str) -> bool:
    """Whether ``caption`` cannot occur among ``split='train'`` captions: it uses a held-out template or
    any phrasing outside :data:`TRAIN_TEMPLATES` / :data:`COMPOSITE_TEMPLATES`, or names a pair of
    :data:`HELDOUT_COMBINATIONS`."""
    kind = _kind(dataset)
    tokens = split_words(caption)
    mentions = _mentions(tokens, kind)
    skeleton = _skeleton(tokens, mentions)
    if len(mentions) == 2:
        return skeleton not in _composite_skeletons(kind)
    label, brightness, size = parse_caption(caption, dataset)
    if any((w, label) in HELDOUT_COMBINATIONS[kind] for w in (brightness, size) if w is not None):
        return True
    return skeleton not in _template_skeletons(kind, TRAIN_TEMPLATES)


def draw_partners(labels: Any, left: Any, rng: np.random.Generator) -> np.ndarray:
    """Indices of a right-hand partner for each example ``left[i]``, drawn uniformly from all of ``labels``
    and redrawn (only where needed) until its label differs from ``labels[left[i]]``."""
    y = np.asarray(labels)
    left = np.asarray(left)
    require(len(np.unique(y)) >= 2, "two-object images need examples of at least 2 classes")
    right = rng.integers(0, y.shape[0], left.shape[0])
    same = y[left] == y[right]
    while same.any():
        right[same] = rng.integers(0, y.shape[0], int(same.sum()))
        same = y[left] == y[right]
    return right


def composite_caption_text(template: str, left: str, right: str) -> str:
    """A :data:`COMPOSITE_TEMPLATES` template with the ``left`` and ``right`` names filled in ("a" before a
    vowel becomes "an")."""
    return _ARTICLE.sub("an ", template.format(left=left, right=right))


def composite_captions(label_left: Any, label_right: Any, dataset: str, rng: np.random.Generator) -> list[str]:
    """One two-object caption per (left, right) class pair: a template of :data:`COMPOSITE_TEMPLATES` and a
    synonym per item drawn by ``rng``, e.g. "a sneaker on the left and a bag on the right"."""
    names = CLASS_NAMES[_kind(dataset)]
    a, b = np.asarray(label_left), np.asarray(label_right)
    template_index = rng.integers(0, len(COMPOSITE_TEMPLATES), a.shape[0])
    synonym_draw = rng.random((a.shape[0], 2))
    out = []
    for i in range(a.shape[0]):
        left_names, right_names = names[a[i]], names[b[i]]
        out.append(composite_caption_text(COMPOSITE_TEMPLATES[template_index[i]],
                                          left_names[int(synonym_draw[i, 0] * len(left_names))],
                                          right_names[int(synonym_draw[i, 1] * len(right_names))]))
    return out


def composite_pairs(images: Any, labels: Any, rng: Any, n: int,
                    dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``n`` two-object images: two items of different classes side by side on an [H, 2W] canvas.

    Returns ``(canvas [n, H, 2W, C] in the images' dtype, labels_left int32 [n], labels_right int32 [n],
    captions)``: left items drawn uniformly, right ones by :func:`draw_partners`, captions by
    :func:`composite_captions`, all from ``rng`` (a Generator or a seed).
    """
    kind = _kind(dataset)
    x = np.asarray(images)
    require(x.ndim == 4 and x.shape[0] > 0, f"images must have shape [N, H, W, C] with N > 0, got {x.shape}")
    require(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0,
            f"n must be an integer >= 0, got {n!r}")
    y = _check_labels(labels, x.shape[0], len(CLASS_NAMES[kind]))
    rng = np.random.default_rng(rng)
    left = rng.integers(0, y.shape[0], int(n))
    right = draw_partners(y, left, rng)
    texts = composite_captions(y[left], y[right], dataset, rng)
    canvas = np.concatenate([x[left], x[right]], axis=2)
    return canvas, y[left].astype(np.int32), y[right].astype(np.int32), texts


def caption_corpus(dataset: str) -> list[str]:
    """Every phrasing any caption function can produce for ``dataset`` (all templates, synonyms and
    attribute phrases, and the two-object captions): build the vocabulary from this so that held-out
    prompts encode too, and take ``max_length`` from its longest caption."""
    kind = _kind(dataset)
    synonyms = [s for names in CLASS_NAMES[kind] for s in names]
    phrases = [" ".join(w for w in (s, b) if w) for s in SIZE_WORDS for b in BRIGHTNESS_WORDS]
    out = [render_caption(t, s, p) for t in TRAIN_TEMPLATES + HELDOUT_TEMPLATES for s in synonyms for p in phrases]
    out += [composite_caption_text(t, a, b) for t in COMPOSITE_TEMPLATES
            for a in synonyms for b in synonyms]
    return out


def heldout_prompts(dataset: str) -> list[str]:
    """Prompts for the held-out pairs of :data:`HELDOUT_COMBINATIONS`, one per template of either split,
    each with the canonical class name (e.g. "a photo of a dark sneaker")."""
    kind = _kind(dataset)
    return [render_caption(t, CLASS_NAMES[kind][c][0], word) for word, c in HELDOUT_COMBINATIONS[kind]
            for t in TRAIN_TEMPLATES + HELDOUT_TEMPLATES]

