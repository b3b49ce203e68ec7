"""Inverse problems and editing from files: the operator of a task, the measurement and the runs around
``Family.restore`` and ``Family.edit``, and the PNG grid and .npz they write.

Reading an input and a mask, and every check that needs no model (file formats, the mask against the
input's size, the task's settings, the method's options), live in :mod:`gm_jax.train.restore_inputs`, which
imports no JAX; they are re-exported here. Measuring y = A x + σ_y ε uses a seeded key; nothing is written
until the results exist, and never over an input file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from gm_jax.core.family import Family
from gm_jax.core.rng import purpose_key, seed_key
from gm_jax.diffusion import operators
from gm_jax.diffusion.operators import LinearOperator
from gm_jax.train.images import save_image_grid
from gm_jax.train.restore_inputs import (
    TASKS,
    InputImages,
    TaskSettings,
    check_method_options,
    check_not_input,
    check_operator,
    check_task_flags,
    images_for_spec,
    parse_mask_kind,
    read_input,
    read_mask,
    read_npz,
    read_png,
    task_blur_sigma,
    task_scale,
)
from gm_jax.train.workdir import check_finite_array

# ----------------------------------------------------------------------------------------------------------
# The task's operator
# ----------------------------------------------------------------------------------------------------------


def mask_from_kind(kind: str, shape: Sequence[int], seed: int = 0) -> LinearOperator:
    """--mask_kind (:func:`~gm_jax.train.restore_inputs.parse_mask_kind`): 'box' (a centred H/2 x W/2 box to
    fill in), 'box:TOP,LEFT,HEIGHT,WIDTH', 'random:P' (each pixel observed with probability P, drawn from
    ``seed``) or 'half:SIDE' (left, right, top, bottom)."""
    name, arg = parse_mask_kind(kind, shape[:2])
    if name == "box":
        return operators.box_mask(shape, *arg)
    if name == "random":
        return operators.random_mask(shape, arg, seed)
    return operators.half_mask(shape, arg)


def build_operator(settings: TaskSettings, shape: Sequence[int]) -> LinearOperator:
    """The operator A of the task on images of ``shape`` (H, W, C): a mask (inpaint; default the centred
    box), average pooling ×scale (superres), a Gaussian blur (deblur) or the channel mean (colourize); the
    settings checked first (:func:`~gm_jax.train.restore_inputs.check_operator`)."""
    h, w, c = (int(v) for v in shape)
    check_operator(settings, (h, w, c))
    if settings.task == "inpaint":
        if settings.mask is not None:
            return operators.mask_operator(settings.mask, (h, w, c), "mask")
        return mask_from_kind(settings.mask_kind or "box", (h, w, c), settings.seed)
    if settings.task == "superres":
        return operators.downsample((h, w, c), task_scale(settings, (h, w)))
    if settings.task == "deblur":
        return operators.blur((h, w, c), task_blur_sigma(settings, (h, w)))
    return operators.colourization((h, w, c))


# ----------------------------------------------------------------------------------------------------------
# Running and writing
# ----------------------------------------------------------------------------------------------------------


def measure(op: LinearOperator, x: np.ndarray, sigma_y: float, seed: int) -> np.ndarray:
    """y = A x + σ_y ε, ε ~ N(0, I) from ``purpose_key(seed_key(seed), "measure")`` (data units)."""
    return np.asarray(op.measure(jnp.asarray(x), purpose_key(seed_key(seed), "measure"), float(sigma_y)))


def restore_images(family: Family, params: Any, x: np.ndarray, op: LinearOperator, seed: int, num: int,
                   options: Mapping[str, Any]) -> dict[str, Any]:
    """Measure ``x`` (σ_y of ``options``, default 0) and draw ``num`` restorations per image with
    ``family.restore``: input, y, A⁺y, restorations [num, B, ...], their mean and per-pixel std, nfe."""
    options = dict(options)
    method = options.pop("method", None)
    y = measure(op, x, options.get("sigma_y", 0.0), seed)
    key = purpose_key(seed_key(seed), "restore")
    out, info = family.restore(params, key, y, op, method, num, **options)
    out = np.asarray(out)
    check_finite_array("restorations", out, f"of family {family.name!r}")
    return {"input": x, "y": y, "pinv": np.asarray(op.pinv(jnp.asarray(y))), "restorations": out,
            "mean": out.mean(0), "std": out.std(0), "nfe": int(info["nfe"])}


def edit_images(family: Family, params: Any, x: np.ndarray, seed: int, num: int, invert: bool,
                options: Mapping[str, Any]) -> dict[str, Any]:
    """``num`` edits per image with ``family.edit`` (strength and label from ``options``; no strength: the
    family's default): input, edits [num, B, ...], nfe."""
    options = dict(options)
    key = purpose_key(seed_key(seed), "edit")
    out, info = family.edit(params, key, x, options.pop("strength", None), num, options.pop("label", None), invert,
                            **options)
    out = np.asarray(out)
    check_finite_array("edits", out, f"of family {family.name!r}")
    return {"input": x, "edits": out, "nfe": int(info["nfe"])}


def _std_for_display(std: np.ndarray, value_range: Sequence[float]) -> np.ndarray:
    lo, hi = (float(v) for v in value_range)
    return lo + (hi - lo) * std / max(float(std.max()), 1e-8)


def write_results(prefix: str, rows: Sequence[np.ndarray], arrays: Mapping[str, Any],
                  value_range: Sequence[float]) -> tuple[str, str]:
    """One PNG grid (one row per entry of ``rows``, each [B, H, W, C]; B columns) and one .npz of ``arrays``;
    returns their paths."""
    b = rows[0].shape[0]
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    png = save_image_grid(np.concatenate(list(rows), axis=0), prefix + ".png", value_range, ncols=b)
    np.savez(prefix + ".npz", **{k: np.asarray(v) for k, v in arrays.items()})
    return png, prefix + ".npz"


def write_restoration(prefix: str, result: Mapping[str, Any], value_range: Sequence[float]) -> tuple[str, str]:
    """Rows: input, the measurement shown as A⁺y, each restoration, their mean and per-pixel std (scaled so
    its largest value is the range's top); the .npz keeps input, y, restorations, mean, std (raw) and nfe."""
    rows = [result["input"], result["pinv"], *result["restorations"], result["mean"],
            _std_for_display(result["std"], value_range)]
    arrays = {k: result[k] for k in ("input", "y", "restorations", "mean", "std", "nfe")}
    return write_results(prefix, rows, arrays, value_range)


def write_edits(prefix: str, result: Mapping[str, Any], value_range: Sequence[float]) -> tuple[str, str]:
    """Rows: input, then each edit; the .npz keeps input, edits and nfe."""
    return write_results(prefix, [result["input"], *result["edits"]], result, value_range)


__all__ = ["InputImages", "TASKS", "TaskSettings", "build_operator",
           "check_method_options", "check_not_input", "check_operator", "check_task_flags", "edit_images",
           "images_for_spec", "mask_from_kind", "measure", "read_input", "read_mask", "read_npz", "read_png",
           "restore_images", "write_edits", "write_restoration"]
