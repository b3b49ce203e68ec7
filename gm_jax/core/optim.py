"""Optimizer from a config: optax chain of clipping, a learning-rate schedule and Adam(W)/SGD."""

from __future__ import annotations

from typing import Any

import optax

from gm_jax.core.errors import check_choice, require


def learning_rate_schedule(cfg: Any) -> optax.Schedule:
    """Linear warm-up for ``cfg.warmup_steps`` then ``cfg.schedule`` ('constant' or 'cosine' over
    ``cfg.decay_steps``) from ``cfg.learning_rate``."""
    require(cfg.learning_rate > 0, f"optim.learning_rate must be > 0, got {cfg.learning_rate}")
    check_choice("optim.schedule", cfg.get("schedule", "constant"), ("constant", "cosine"))
    warmup = int(cfg.get("warmup_steps", 0))
    if cfg.get("schedule", "constant") == "cosine":
        decay = max(int(cfg.get("decay_steps", 1)), warmup + 1)
        return optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, decay)
    if warmup > 0:
        return optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, warmup),
                                     optax.constant_schedule(cfg.learning_rate)], [warmup])
    return optax.constant_schedule(cfg.learning_rate)


def make_optimizer(cfg: Any) -> optax.GradientTransformation:
    """``cfg`` fields: name ('adam', 'adamw', 'sgd'), learning_rate, b1, b2, weight_decay,
    grad_clip (global norm; 0 disables), warmup_steps, schedule, decay_steps."""
    name = cfg.get("name", "adam")
    check_choice("optim.name", name, ("adam", "adamw", "sgd"))
    lr = learning_rate_schedule(cfg)
    if name == "adam":
        opt = optax.adam(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999))
    elif name == "adamw":
        opt = optax.adamw(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999),
                          weight_decay=cfg.get("weight_decay", 1e-4))
    else:
        opt = optax.sgd(lr, momentum=cfg.get("momentum", 0.9))
    clip = float(cfg.get("grad_clip", 0.0))
    require(clip >= 0, f"optim.grad_clip must be >= 0 (0 disables), got {clip}")
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
