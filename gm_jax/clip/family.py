"""Contrastive image–text pretraining of :class:`gm_jax.nn.clip.MiniCLIP` as a :class:`gm_jax.core.Family`
(Radford et al. 2021), selected by ``config.model.family = 'clip'``.

Training. Each captioned batch ``{"x", "label", "tokens", "token_mask"}`` of N pairs is embedded (images mapped
from ``spec.value_range`` to [-1, 1] for the image encoder, captions through the text transformer), both
sides L2-normalized, and the symmetric InfoNCE loss (Radford et al. 2021, Fig. 3; van den Oord et al. 2018)

    logits = s · I Tᵀ,   loss = ½ [CE(logits, diag) + CE(logitsᵀ, diag)]

is minimized over the encoders, the projections and the learned temperature ``s = exp(min(log(1/τ), log 100))``
(``τ`` initialized at 0.07, the scale never above 100; Sec. 2.5). Duplicate captions are not special-cased:
two rows with the same caption (two "a photo of a bag") are still each other's negatives, as in standard CLIP
training with in-batch negatives, and it is left so: the image→text cross-entropy of a row whose caption
occurs k times in the batch is at least log k (identical captions have identical embeddings), so the loss
cannot reach 0 on such batches, and the strict ``retrieval_accuracy`` (argmax = the diagonal; the first of
equal logits wins) is capped; ``retrieval_accuracy_caption`` also counts a retrieved caption identical to the
row's own as a hit.

Evaluation (``evaluate``): ``clip_loss`` on the batch, ``clip_score`` of its matching pairs (CLIPScore,
Hessel et al. 2021, w = 100), ``logit_scale``, and ``zero_shot_accuracy`` (Sec. 3.1.2): each image is
classified by the argmax of its logits against the embeddings of ``spec.text.class_prompts`` (one prompt per
class, encoded once on the host) and compared with ``batch["label"]``. The family cannot sample.

Parameters: ``params = {"clip": <MiniCLIP params>}``, so a downstream family rebuilds
``MiniCLIP(vocab_size=len(spec.text.vocabulary), max_len=spec.text.max_length, embed_dim, width, depth,
num_heads, image_channels)`` from this run's ``config.model`` (same field names) and calls
``apply({"params": params["clip"]}, tokens, mask, method="encode_text")``.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gm_jax.core import Batch, DataSpec, Family, Metrics, PyTree, TrainState, apply_gradients, make_optimizer
from gm_jax.core.errors import check_choice, require
from gm_jax.core.family import FamilyInputs, to_symmetric
from gm_jax.core.options import Option
from gm_jax.nn.clip import MiniCLIP, clip_loss, clip_score, zero_shot_logits
from gm_jax.nn.precision import COMPUTE_DTYPES, compute_dtype

SAMPLE_OPTIONS: tuple[Option, ...] = ()


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model`` for this family, with their defaults (named as MiniCLIP's fields)."""
    c = ml_collections.ConfigDict()
    c.family = "clip"
    c.embed_dim = 64                 # dimension of the shared, L2-normalized embedding space
    c.width = 64                     # text transformer width
    c.depth = 2                      # text transformer blocks
    c.num_heads = 4                  # attention heads (must divide width)
    c.image_channels = (32, 64)      # conv image encoder: channels per stride-2 level
    c.dtype = "float32"              # computation dtype: 'float32' | 'bfloat16'
    return c


def _validate(m: ml_collections.ConfigDict, spec: DataSpec) -> None:
    require(spec.text is not None, f"family 'clip' trains on image captions but dataset {spec.name!r} has none; "
            "set data.captions=True")
    require(spec.is_image, f"family 'clip' needs image data [H, W, C], got shape {tuple(spec.shape)}")
    check_choice("model.dtype", str(m.get("dtype", "float32")), COMPUTE_DTYPES)
    for name in ("embed_dim", "width", "depth", "num_heads"):
        require(int(m[name]) >= 1, f"model.{name} must be >= 1, got {m[name]}")
    require(int(m.width) % int(m.num_heads) == 0,
            f"model.num_heads={m.num_heads} must divide model.width={m.width}")
    channels = tuple(m.image_channels)
    require(len(channels) >= 1 and all(int(c) >= 1 for c in channels),
            f"model.image_channels must list at least one positive width, e.g. (32, 64), got {channels}")
    prompts = tuple(spec.text.class_prompts)
    require(not prompts or spec.num_classes in (0, len(prompts)),
            f"spec.text.class_prompts has {len(prompts)} prompts for {spec.num_classes} classes; "
            "give one prompt per class")


def build_model(m: ml_collections.ConfigDict, spec: DataSpec) -> MiniCLIP:
    """The MiniCLIP described by ``config.model`` over the vocabulary and length of ``spec.text``."""
    return MiniCLIP(vocab_size=len(spec.text.vocabulary), max_len=int(spec.text.max_length),
                    embed_dim=int(m.embed_dim), width=int(m.width), depth=int(m.depth), num_heads=int(m.num_heads),
                    image_channels=tuple(int(c) for c in m.image_channels), dtype=compute_dtype(m))


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces of one CLIP family: the module, the optimizer and the encoded class prompts."""

    spec: DataSpec
    model: MiniCLIP
    tx: Any
    ema_decay: float
    class_tokens: np.ndarray | None  # int32 [K, L], None without class prompts
    class_mask: np.ndarray | None    # bool [K, L]


def embed(s: Setup, params: PyTree, batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(image_emb [N, E], text_emb [N, E], logit_scale)`` of the batch's pairs (both sides L2-normalized)."""
    return s.model.apply({"params": params["clip"]}, to_symmetric(batch["x"], s.spec.value_range),
                         jnp.asarray(batch["tokens"], jnp.int32), jnp.asarray(batch["token_mask"], bool))


def retrieval_metrics(logits: jax.Array, tokens: jax.Array) -> dict[str, jax.Array]:
    """Image→text retrieval in the batch: ``retrieval_accuracy`` = fraction of rows i with
    ``argmax_j logits[i, j] = i``; ``retrieval_accuracy_caption`` = fraction whose retrieved caption is
    token-for-token the row's own (duplicates of the caption count as hits)."""
    pred = jnp.argmax(logits, axis=1)
    rows = jnp.arange(logits.shape[0])
    same_caption = jnp.all(tokens[pred] == tokens, axis=1)
    return {"retrieval_accuracy": jnp.mean((pred == rows).astype(jnp.float32)),
            "retrieval_accuracy_caption": jnp.mean(same_caption.astype(jnp.float32))}


def pair_metrics(image_emb: jax.Array, text_emb: jax.Array, scale: jax.Array,
                 tokens: jax.Array) -> dict[str, jax.Array]:
    """``loss`` (the symmetric InfoNCE of :func:`gm_jax.nn.clip.clip_loss`), ``logit_scale`` and the in-batch
    retrieval accuracies of N embedded pairs."""
    logits = scale * (image_emb @ text_emb.T)
    return {"loss": clip_loss(image_emb, text_emb, scale), "logit_scale": scale,
            **retrieval_metrics(logits, tokens)}


def loss_fn(s: Setup, params: PyTree, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The symmetric InfoNCE loss of the batch and its metrics (:func:`pair_metrics`)."""
    metrics = pair_metrics(*embed(s, params, batch), batch["tokens"])
    return metrics["loss"], metrics


def init_state(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    """``params = {"clip": MiniCLIP params}`` initialized on the example batch, the optimizer state and the
    EMA copy when ``optim.ema_decay > 0``."""
    key_init, key_state = jax.random.split(key)
    variables = jax.jit(s.model.init)(key_init, to_symmetric(example_batch["x"], s.spec.value_range),
                                      jnp.asarray(example_batch["tokens"], jnp.int32),
                                      jnp.asarray(example_batch["token_mask"], bool))
    return TrainState.create(key_state, {"clip": variables["params"]}, s.tx, use_ema=s.ema_decay > 0)


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One optimizer step on the symmetric InfoNCE loss; metrics ``loss``, ``logit_scale`` and the in-batch
    retrieval accuracies (deterministic: ``key`` is unused)."""
    del key
    grads, metrics = jax.grad(partial(loss_fn, s), has_aux=True)(state.params, batch)
    return apply_gradients(state, s.tx, grads, s.ema_decay), metrics


def evaluate(s: Setup, params: PyTree, batch: Batch, key: jax.Array) -> Metrics:
    """``clip_loss``, ``clip_score`` (matching pairs), ``logit_scale``, the retrieval accuracies and, with
    class prompts and labels, ``zero_shot_accuracy`` (argmax of the zero-shot logits = ``batch["label"]``)."""
    del key
    image_emb, text_emb, scale = embed(s, params, batch)
    out = pair_metrics(image_emb, text_emb, scale, batch["tokens"])
    out["clip_loss"] = out.pop("loss")
    out["clip_score"] = clip_score(image_emb, text_emb)
    if s.class_tokens is not None and "label" in batch:
        class_emb = s.model.apply({"params": params["clip"]}, jnp.asarray(s.class_tokens), jnp.asarray(s.class_mask),
                                  method="encode_text")
        pred = jnp.argmax(zero_shot_logits(image_emb, class_emb, scale), axis=1)
        out["zero_shot_accuracy"] = jnp.mean((pred == jnp.asarray(batch["label"], jnp.int32)).astype(jnp.float32))
    return out


def make_family(config: ml_collections.ConfigDict, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()
                ) -> Family:
    """The CLIP family from ``config.model`` (see :func:`model_defaults`) and ``config.optim``; a dataset
    without captions (``spec.text is None``) is a one-line ConfigError."""
    del inputs  # no evaluation images or upstream runs are needed
    m = config.model
    _validate(m, spec)
    tokens, mask = spec.text.encode(tuple(spec.text.class_prompts)) if spec.text.class_prompts else (None, None)
    s = Setup(spec, build_model(m, spec), make_optimizer(config.optim), float(config.optim.get("ema_decay", 0.0)),
              tokens, mask)
    return Family(name="clip", init=partial(init_state, s), train_step=partial(train_step, s),
                  evaluate=jax.jit(partial(evaluate, s)))
