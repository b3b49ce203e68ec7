"""Deterministic, resumable input pipeline: the batch of step ``s`` is a pure function of ``(seed, s)``.

Order: epoch ``e`` is a permutation of the N training examples drawn from
``np.random.Generator(np.random.PCG64([seed, e]))``. Each epoch has ``N // B`` batches of the global batch
size B; the last ``N mod B`` examples of each epoch's permutation are dropped, so a batch never straddles
two epochs and step ``s`` lies in epoch ``s // (N // B)`` (a different remainder is dropped each epoch).
Each of ``process_count`` processes receives its contiguous slice of ``B / process_count`` rows.

Values (the transforms, applied per batch on the host):

- ``binarize='static'``: one Bernoulli(p = pixel/255) sample of the whole split, drawn once with a fixed
  seed (independent of the run's seed), as in the fixed binarized MNIST of Larochelle & Murray 2011.
- ``binarize='dynamic'``: a fresh Bernoulli(p = pixel/255) sample at every step (Salakhutdinov & Murray
  2008), drawn from ``Generator(PCG64([seed, step, 1]))``.
  Bernoulli(k/255) is drawn exactly as ``u < k`` with ``u`` uniform on the integers 0..254.
  Binary data is always in {0, 1} whatever ``scale`` says; ``DataSpec.binary`` is True and ``levels`` 2.
- ``dequantize=True``: uniform dequantization y = (k + u) / 256, u ~ U[0, 1) (Theis et al. 2016, sec. 3.1;
  Uria et al. 2013), u from ``Generator(PCG64([seed, step, 2]))``; without it y = k / 255.
- ``scale``: 'zero_one' gives y, 'minus_one_one' gives 2y - 1.

Random numbers are drawn for the whole global batch and then sliced, so the processes' slices concatenate
to exactly the one-process batch. Toy 2-D data is sampled afresh each step:
``sampler(fold_in(key(seed), step), B)``.

Captions (``data.captions=True``; the datasets of :data:`CAPTION_DATASETS`), from :mod:`gm_jax.data.captions`:

- at construction, per-class tercile cuts of brightness and size are fitted on the raw uint8 training pixels
  (the first ``num_examples``; :func:`~gm_jax.data.captions.fit_attribute_thresholds`, exposed as
  ``Pipeline.caption_thresholds``) and every training example's attribute words are measured once. The
  pixels are measured *before* any binarization, so a binarized run is captioned as its 8-bit source
  would be (a Bernoulli sample's "brightness" would only be noise); ``caption_attributes=False`` gives
  names only and fits nothing (``caption_thresholds`` is then None);
- the vocabulary is built from ``caption_corpus(name)`` (every phrasing, held-out ones included) and the
  token length ``L`` is ``caption_max_length``, or with 0 the longest corpus caption (+2 with
  ``caption_bos_eos``): ``DataSpec.text`` is the :class:`~gm_jax.core.family.TextSpec`, whose class
  prompts are "a photo of a {name}" with each class's canonical name ("an ankle boot");
- the batch of step ``s`` adds ``"tokens"`` int32 [b, L] and ``"token_mask"`` bool [b, L]: the captions of
  the *global* batch drawn by ``make_captions(..., split='train')`` with ``Generator(PCG64([seed, s, 3]))``,
  then this process's rows; eval batch ``i`` draws with ``PCG64([seed, 2**62, i, 3])``, its attributes
  measured with the training cuts.

Two-object images (``data.composite=True``, with captions): every example of a batch (the *left* item, in
the order above) is set beside a *right* item of another class on an [H, 2W] canvas, and captioned with
position words, e.g. "a sneaker on the left and a bag on the right" (no attribute words; nothing is fitted).
The right items of step ``s`` are :func:`~gm_jax.data.captions.draw_partners` of the global batch with
``Generator(PCG64([seed, s, 4]))`` (eval batch ``i``: ``PCG64([seed, 2**62, i, 4])``, partners from the eval
split), their captions :func:`~gm_jax.data.captions.composite_captions` with the caption stream above. The
batch's ``"label"`` is the left item's class and ``"label_right"`` the right one's. Binarization and
dequantization apply to the whole canvas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from gm_jax.core.errors import ConfigError, DataError, check_choice, require
from gm_jax.core.family import DataSpec, TextSpec
from gm_jax.core.tokenizer import build_vocabulary, split_words
from gm_jax.data import captions
from gm_jax.data.loading import DATASET_NAMES, load_arrays
from gm_jax.data.toy2d import TOY_SAMPLERS, TOY_VALUE_RANGES

SCALES = ("minus_one_one", "zero_one")
BINARIZATIONS = ("none", "static", "dynamic")
STATIC_BINARIZATION_SEED = 1234
_DYNAMIC_STREAM, _DEQUANTIZE_STREAM, _CAPTION_STREAM, _PARTNER_STREAM = 1, 2, 3, 4
_EVAL_STEP = 2**62  # eval noise uses PCG64([seed, _EVAL_STEP, batch_index]): a step no run reaches
SPLIT_INDEX = {"train": 0, "test": 1}  # seeds the static binarization of each split
CLASS_PROMPT_TEMPLATE = "a photo of a {attrs} {name}"  # DataSpec.text.class_prompts, rendered without attributes


def _has_captions(name: str) -> bool:
    try:
        captions.class_names(name)
    except ConfigError:
        return False
    return True


CAPTION_DATASETS = tuple(n for n in DATASET_NAMES if _has_captions(n))


def data_defaults() -> ml_collections.ConfigDict:
    """Defaults of ``config.data``: the embedded Fashion-MNIST subset, batch 64, values in [-1, 1]."""
    return ml_collections.ConfigDict({
        "name": "fashion_mnist_small", "split": "train", "eval_split": "test", "data_dir": "",
        "source_dir": "", "batch_size": 64, "scale": "minus_one_one", "binarize": "none",
        "dequantize": False, "num_examples": 0,
        # captions (text-to-image): tokens of a caption per image; see the module docstring
        "captions": False, "caption_attributes": True, "caption_max_length": 0, "caption_bos_eos": False,
        "composite": False,  # two items side by side with position words (needs captions)
    })


def bernoulli_binarize(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact Bernoulli(p = k/255) sample of uint8 pixels k: ``u < k`` with u uniform on {0, ..., 254}."""
    return (rng.integers(0, 255, size=pixels.shape, dtype=np.uint8) < pixels).astype(np.uint8)


def scale_pixels(pixels: np.ndarray, scale: str, noise: np.ndarray | None = None) -> np.ndarray:
    """uint8 k -> float32 y = k/255, or y = (k + u)/256 with dequantization noise u in [0, 1)
    (Theis et al. 2016, sec. 3.1); returned as y ('zero_one') or 2y - 1 ('minus_one_one')."""
    k = pixels.astype(np.float32)
    if noise is None:
        y = k / np.float32(255.0)
    else:  # float32 rounding of k + u may reach k + 1: keep y strictly below (k + 1) / 256
        upper = np.nextafter((k + np.float32(1.0)) / np.float32(256.0), np.float32(0.0))
        y = np.minimum((k + noise) / np.float32(256.0), upper)
    return y if scale == "zero_one" else np.float32(2.0) * y - np.float32(1.0)


class Pipeline:
    """Batches of one dataset for one process; see the module docstring for order and transforms.

    ``spec``: the :class:`DataSpec` a family is built from. ``num_examples``: size of the training set
    (0 for an endless toy stream). ``steps_per_epoch``: N // global batch size (0 for toy data).
    """

    def __init__(self, cfg: Any, seed: int, process_index: int, process_count: int):
        self.name = str(cfg.get("name"))
        if self.name not in DATASET_NAMES:
            raise DataError(f"unknown dataset {self.name!r}; choose one of: {', '.join(DATASET_NAMES)}")
        self.scale = str(cfg.get("scale", "minus_one_one"))
        self.binarize = str(cfg.get("binarize", "none"))
        check_choice("data.scale", self.scale, SCALES)
        check_choice("data.binarize", self.binarize, BINARIZATIONS)
        self.dequantize = bool(cfg.get("dequantize", False))
        require(not (self.dequantize and self.binarize != "none"),
                "data.dequantize applies to 8-bit data, not binarized data; set one of them off")
        self.batch_size = int(cfg.get("batch_size", 64))
        require(self.batch_size > 0, f"data.batch_size must be > 0, got {self.batch_size}")
        require(process_count >= 1 and 0 <= process_index < process_count,
                f"process_index must lie in 0..process_count-1, got {process_index} of {process_count}")
        require(self.batch_size % process_count == 0,
                f"data.batch_size {self.batch_size} must divide by the process count {process_count}")
        require(int(seed) >= 0, f"seed must be >= 0, got {seed}")
        self.seed, self.process_index, self.process_count = int(seed), process_index, process_count
        self.local_batch_size = self.batch_size // process_count
        self.limit = int(cfg.get("num_examples", 0))
        require(self.limit >= 0, f"data.num_examples must be >= 0 (0 = all), got {self.limit}")
        self.eval_split = str(cfg.get("eval_split", "test"))
        self._load_kwargs = {"data_dir": cfg.get("data_dir") or None, "source_dir": cfg.get("source_dir") or None}
        self._perm_cache: tuple[int, np.ndarray] | None = None
        self._caption_options(cfg)

        if self.name in TOY_SAMPLERS:
            require(self.binarize == "none" and not self.dequantize,
                    f"{self.name} is continuous 2-D data; set data.binarize='none' and data.dequantize=False")
            self._sampler = TOY_SAMPLERS[self.name]  # jitted, num static
            self.spec = DataSpec(shape=(2,), num_classes=0, value_range=TOY_VALUE_RANGES[self.name],
                                 binary=False, levels=0, name=self.name)
            self.num_examples, self.steps_per_epoch = 0, 0
            return
        data = load_arrays(self.name, str(cfg.get("split", "train")), **self._load_kwargs)
        split_index = SPLIT_INDEX.get(str(cfg.get("split", "train")), 0)
        self._x, self._label = self._prepared_pixels(data, split_index, self.binarize == "static")
        self.num_examples = int(self._x.shape[0])
        require(self.batch_size <= self.num_examples,
                f"data.batch_size {self.batch_size} exceeds the {self.num_examples} examples of {self.name}")
        self.steps_per_epoch = self.num_examples // self.batch_size
        binary = self.binarize != "none"
        value_range = (0.0, 1.0) if binary or self.scale == "zero_one" else (-1.0, 1.0)
        shape = tuple(self._x.shape[1:])
        if self.composite:
            shape = (shape[0], 2 * shape[1]) + shape[2:]
        self.spec = DataSpec(shape=shape, num_classes=data.num_classes,
                             value_range=value_range, binary=binary, levels=2 if binary else data.levels,
                             name=self.name)
        if self.captioned:
            self._setup_captions(data.x[:self.limit or data.x.shape[0]], self._label, data.num_classes)

    def _caption_options(self, cfg: Any) -> None:
        """Read and check the caption fields of ``config.data``."""
        self.captioned = bool(cfg.get("captions", False))
        self.composite = bool(cfg.get("composite", False))
        require(self.captioned or not self.composite, "data.composite=True makes two-object captions; set "
                                                      "data.captions=True too (or data.composite=False)")
        self.caption_attributes = bool(cfg.get("caption_attributes", True)) and not self.composite
        self.caption_bos_eos = bool(cfg.get("caption_bos_eos", False))
        length = cfg.get("caption_max_length", 0)
        require(isinstance(length, (int, np.integer)) and not isinstance(length, bool) and length >= 0,
                f"data.caption_max_length must be an integer >= 0 (0: the longest caption), got {length!r}")
        self.caption_thresholds: dict[str, Any] | None = None
        self._attributes: dict[str, np.ndarray] | None = None
        self._eval_attributes: tuple[str, dict[str, np.ndarray] | None] | None = None
        if not self.captioned:
            return
        require(self.name in CAPTION_DATASETS, f"data.captions=True needs a dataset with class names to caption "
                                               f"({', '.join(CAPTION_DATASETS)}), got {self.name!r}; set "
                                               f"data.captions=False or choose one of those")
        self._corpus = captions.caption_corpus(self.name)  # checked before any data is loaded
        needed = max(len(split_words(c)) for c in self._corpus) + (2 if self.caption_bos_eos else 0)
        self._caption_max_length = int(length) or needed
        with_marks = " with <bos>/<eos>" if self.caption_bos_eos else ""
        require(self._caption_max_length >= needed,
                f"data.caption_max_length={length} is too short for the captions of {self.name}: the longest has "
                f"{needed} tokens{with_marks}; set data.caption_max_length={needed} or 0 (automatic)")

    def _setup_captions(self, raw: np.ndarray, label: np.ndarray | None, num_classes: int) -> None:
        """Fit the attribute cuts on the raw training pixels, measure every training example once, and set
        ``spec.text`` (vocabulary of the caption corpus, length L, class prompts)."""
        require(label is not None, f"data.captions=True needs labels, and {self.name} has none")
        if self.caption_attributes:
            try:
                self.caption_thresholds = captions.fit_attribute_thresholds(raw, label, num_classes)
            except ConfigError as err:
                raise ConfigError(f"data.captions on {self.name}: {err}; raise data.num_examples (or set "
                                  f"data.caption_attributes=False)") from None
            measured = captions.measure_attributes(raw, label, self.caption_thresholds)
            self._attributes = {k: measured[k] for k in ("brightness", "size")}
        prompts = tuple(captions.render_caption(CLASS_PROMPT_TEMPLATE, names[0])
                        for names in captions.class_names(self.name))
        text = TextSpec(vocabulary=build_vocabulary(self._corpus), max_length=self._caption_max_length,
                        bos_eos=self.caption_bos_eos, class_prompts=prompts)
        self.spec = dataclasses.replace(self.spec, text=text)

    def _draw_captions(self, label: np.ndarray, attributes: dict[str, np.ndarray] | None, index: np.ndarray,
                       stream: list[int]) -> list[str]:
        """Training-template captions of the examples ``index`` (labels ``label[index]``), drawn by
        ``Generator(PCG64(stream))``; attribute words from ``attributes`` (None: names only)."""
        rng = np.random.Generator(np.random.PCG64(stream))
        if self.composite:
            return captions.composite_captions(label[index[0]], label[index[1]], self.name, rng)
        chosen = None if attributes is None else {k: v[index] for k, v in attributes.items()}
        return captions.make_captions(label[index], chosen, self.name, rng=rng, split="train")

    def captions_of(self, step: int) -> list[str]:
        """The caption strings of the *global* batch of ``step`` (all processes' rows, in order); the batch's
        ``"tokens"`` encode this process's slice of them."""
        require(self.spec.text is not None, "captions_of needs data.captions=True")
        require(int(step) >= 0, f"step must be >= 0, got {step}")
        return self._draw_captions(self._label, self._attributes, self._items(self._label, int(step)),
                                   [self.seed, int(step), _CAPTION_STREAM])

    def _add_tokens(self, out: dict[str, np.ndarray], texts: list[str]) -> dict[str, np.ndarray]:
        """``out`` with ``"tokens"`` int32 [n, L] and ``"token_mask"`` bool [n, L] of ``texts``."""
        out["tokens"], out["token_mask"] = self.spec.text.encode(texts)
        return out

    def _prepared_pixels(self, data, split_index: int, static: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """First ``num_examples`` examples; statically binarized (fixed seed, whole split) when ``static``."""
        x = data.x
        if static:
            x = bernoulli_binarize(x, np.random.Generator(np.random.PCG64([STATIC_BINARIZATION_SEED,
                                                                             split_index])))
        end = self.limit or x.shape[0]
        label = data.label[:end] if data.label is not None and data.num_classes > 0 else None
        return x[:end], label

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            perm = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(self.num_examples)
            self._perm_cache = (epoch, perm)
        return self._perm_cache[1]

    def global_indices(self, step: int) -> np.ndarray:
        """Indices into the training set of the global batch of ``step`` (all processes together)."""
        epoch, position = divmod(int(step), self.steps_per_epoch)
        return self._permutation(epoch)[position * self.batch_size:(position + 1) * self.batch_size]

    def _items(self, label: np.ndarray | None, step: int, left: np.ndarray | None = None,
               stream: list[int] | None = None) -> np.ndarray:
        """The examples of the global batch of ``step`` (or the given ``left`` ones): indices [B], or with
        ``data.composite`` [2, B] of (left, right) pairs, partners drawn by ``PCG64(stream)``."""
        left = self.global_indices(step) if left is None else left
        if not self.composite:
            return left
        stream = [self.seed, step, _PARTNER_STREAM] if stream is None else stream
        return np.stack([left, captions.draw_partners(label, left, np.random.Generator(np.random.PCG64(stream)))])

    def _pixels(self, x: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``x[items]``, or the canvases [n, H, 2W, C] of (left, right) ``items`` [2, n] side by side."""
        return np.concatenate([x[items[0]], x[items[1]]], axis=2) if self.composite else x[items]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's slice of the global batch of ``step``: ``{"x": float32, "label": int32}``, plus
        ``"tokens"`` int32 [b, L] and ``"token_mask"`` bool [b, L] with ``data.captions``."""
        require(int(step) >= 0, f"step must be >= 0, got {step}")
        step = int(step)
        mine = slice(self.process_index * self.local_batch_size, (self.process_index + 1) * self.local_batch_size)
        if self.name in TOY_SAMPLERS:
            x = self._sampler(jax.random.fold_in(jax.random.key(self.seed), step), self.batch_size)
            return {"x": np.asarray(x, np.float32)[mine]}
        index = self._items(self._label, step)[..., mine]
        pixels = self._pixels(self._x, index)
        global_shape = (self.batch_size,) + pixels.shape[1:]
        if self.binarize == "dynamic":
            rng = np.random.Generator(np.random.PCG64([self.seed, step, _DYNAMIC_STREAM]))
            u = rng.integers(0, 255, size=global_shape, dtype=np.uint8)[mine]
            pixels = (u < pixels).astype(np.uint8)
        label = None if self._label is None else self._label[index]
        out = self._finish(pixels, label, [self.seed, step, _DEQUANTIZE_STREAM], global_shape, mine)
        return out if self.spec.text is None else self._add_tokens(out, self.captions_of(step)[mine])

    def _finish(self, pixels: np.ndarray, label: np.ndarray | None, stream: list[int],
                noise_shape: tuple[int, ...], rows: slice) -> dict[str, np.ndarray]:
        """Binary pixels as float32, or scaled (and dequantized with noise rows ``rows`` of a draw of
        ``noise_shape`` from ``PCG64(stream)``) 8-bit pixels; labels as int32."""
        if self.binarize != "none":
            x = pixels.astype(np.float32)
        else:
            noise = None
            if self.dequantize:
                noise = np.random.Generator(np.random.PCG64(stream)).random(noise_shape, np.float32)[rows]
            x = scale_pixels(pixels, self.scale, noise)
        out = {"x": x}
        if label is not None and self.composite:
            out["label"], out["label_right"] = label[0].astype(np.int32), label[1].astype(np.int32)
        elif label is not None:
            out["label"] = label.astype(np.int32)
        return out

    def eval_batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Batches of the eval split in stored order (whole split, not sliced by process; the first
        ``num_examples`` when set). The last, partial batch is kept (smaller, not padded). Binarized data
        uses the fixed static sample; dequantization noise comes from ``PCG64([seed, 2**62, batch_index])``;
        captions (with ``data.captions``) from ``PCG64([seed, 2**62, batch_index, 3])``, training templates,
        attributes measured with the training cuts."""
        require(batch_size > 0, f"eval batch_size must be > 0, got {batch_size}")
        data = load_arrays(self.name, self.eval_split, **self._load_kwargs)
        if self.name in TOY_SAMPLERS:
            end = self.limit or data.num_examples
            for start in range(0, end, batch_size):
                yield {"x": np.asarray(data.x[start:min(start + batch_size, end)], np.float32)}
            return
        # dynamic runs evaluate on the static sample too, so evaluation is deterministic
        x, label = self._prepared_pixels(data, SPLIT_INDEX.get(self.eval_split, 1), self.binarize != "none")
        attributes = self._eval_split_attributes(data.x[:x.shape[0]], label) if self.spec.text is not None else None
        for i, start in enumerate(range(0, x.shape[0], batch_size)):
            items = self._items(label, _EVAL_STEP, np.arange(start, min(start + batch_size, x.shape[0])),
                                [self.seed, _EVAL_STEP, i, _PARTNER_STREAM])
            pixels = self._pixels(x, items)
            out = self._finish(pixels, None if label is None else label[items], [self.seed, _EVAL_STEP, i],
                               pixels.shape, slice(None))
            if self.spec.text is not None:
                texts = self._draw_captions(label, attributes, items, [self.seed, _EVAL_STEP, i, _CAPTION_STREAM])
                out = self._add_tokens(out, texts)
            yield out

    def _eval_split_attributes(self, raw: np.ndarray, label: np.ndarray) -> dict[str, np.ndarray] | None:
        """Attribute words of the eval split's raw pixels against the *training* cuts (measured once)."""
        if self.caption_thresholds is None:
            return None
        if self._eval_attributes is None or self._eval_attributes[0] != self.eval_split:
            measured = captions.measure_attributes(raw, label, self.caption_thresholds)
            self._eval_attributes = (self.eval_split, {k: measured[k] for k in ("brightness", "size")})
        return self._eval_attributes[1]

    def eval_images(self, num: int, chunk: int = 500) -> dict[str, np.ndarray]:
        """The first ``num`` examples of the eval split as one batch (fewer when the split is smaller), read
        in chunks of ``chunk`` through :meth:`eval_batches` (the one way to collect evaluation images)."""
        require(num > 0, f"number of eval images must be > 0, got {num}")
        parts: list[dict[str, np.ndarray]] = []
        have = 0
        for batch in self.eval_batches(min(num, chunk)):
            parts.append(batch)
            have += len(batch["x"])
            if have >= num:
                break
        return {k: np.concatenate([b[k] for b in parts])[:num] for k in parts[0]}


def make_pipeline(data_cfg: Any, seed: int, process_index: int = 0, process_count: int = 1) -> Pipeline:
    """Build the :class:`Pipeline` of ``config.data`` (fields and defaults in :func:`data_defaults`).

    Raises ConfigError for bad fields (the global batch size must divide by ``process_count``) and
    DataError when the dataset cannot be loaded.
    """
    if data_cfg is None:
        raise ConfigError("config.data is missing; start from gm_jax.data.data_defaults()")
    return Pipeline(data_cfg, seed, process_index, process_count)
