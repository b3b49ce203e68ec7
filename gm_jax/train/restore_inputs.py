"""The checks of ``gm-jax restore`` and ``gm-jax edit`` that need no model and no JAX: reading an input (a PNG
via Pillow, or an .npz holding an ``images``/``samples``/``x`` array) and a mask PNG, the task's flags and
settings (:func:`check_operator` makes every check that building the operator in
:func:`gm_jax.train.restore.build_operator` would make), the method's options (from the declared snapshot,
:func:`gm_jax.train.declared.restore_methods`), and outputs that would overwrite an input. The CLI runs all
of them before it imports JAX, so a wrong flag or file is one line in well under a second.

Conventions: pixels of 8-bit files map to the data's value range (0 → lo, 255 → hi); float arrays of an .npz
are taken to be in that range already. A mask PNG is binary, 255 (or 1) where the pixel is observed and 0
where it is to be filled in.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gm_jax.core.errors import ConfigError, require

if TYPE_CHECKING:
    from gm_jax.core.family import DataSpec

TASKS = ("inpaint", "superres", "deblur", "colourize")
NPZ_KEYS = ("images", "samples", "x")
# the task each task-specific flag belongs to
TASK_FLAGS = {"mask": "inpaint", "mask_kind": "inpaint", "scale": "superres", "blur_sigma": "deblur"}
DEFAULT_SCALE = 4
DEFAULT_BLUR_SIGMA = 1.0
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma weights (as Pillow's "L")


@dataclasses.dataclass(frozen=True)
class InputImages:
    """Images read from a file, [B, H, W, C] float32; ``unit``: 8-bit pixels scaled to [0, 1] (mapped to the
    data's range later), else values already in the data's range."""

    path: str
    pixels: np.ndarray
    unit: bool

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.pixels.shape[1]), int(self.pixels.shape[2])


def _open_png(path: str, what: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    require(os.path.isfile(path), f"{what} {path} not found; pass an existing file")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ConfigError(f"{what} {path} is not a readable image ({type(e).__name__}); pass a PNG file") from None
    return img


def read_png(path: str) -> InputImages:
    """One image of a PNG as [1, H, W, C] in [0, 1]: grayscale ('1', 'L', 'LA', 16-bit 'I;16') as C = 1,
    colour ('RGB', 'RGBA', palette) as C = 3; alpha dropped."""
    img = _open_png(path, "input image")
    if img.mode in ("1", "L", "LA"):
        pixels = np.asarray(img.convert("L"), np.float32) / 255.0
    elif img.mode in ("I;16", "I;16B", "I;16L"):
        pixels = np.asarray(img, np.float32) / 65535.0
    elif img.mode in ("RGB", "RGBA", "P", "PA"):
        pixels = np.asarray(img.convert("RGB"), np.float32) / 255.0
    else:
        raise ConfigError(f"input image {path} has Pillow mode {img.mode!r}; save it as 8-bit grayscale or RGB")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return InputImages(path, pixels[None], unit=True)


def _npz_array(path: str) -> np.ndarray:
    require(os.path.isfile(path), f"input file {path} not found; pass an existing file")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"input file {path} is not a readable .npz archive ({type(e).__name__}); pass a file "
                          "written by numpy.savez") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ConfigError(f"input file {path} is a single .npy array, not an .npz archive; save it with "
                          "numpy.savez(path, images=...)")
    with data:
        key = next((k for k in NPZ_KEYS if k in data.files), None)
        require(key is not None, f"input file {path} holds {sorted(data.files) or 'no arrays'}, but no array "
                f"named {', '.join(NPZ_KEYS)}; save the images under one of those names")
        try:
            return np.asarray(data[key])
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ConfigError(f"input file {path}: array {key!r} is unreadable ({type(e).__name__}); write the "
                              "file again with numpy.savez") from None


def read_npz(path: str) -> InputImages:
    """The images of an .npz (first of ``images``, ``samples``, ``x``): [H, W], [H, W, C] (C = 1 or 3),
    [B, H, W] or [B, H, W, C]; uint8 pixels are scaled to [0, 1], other numbers taken as they are."""
    a = _npz_array(path)
    require(a.dtype.kind in "uifb", f"input file {path}: the images have dtype {a.dtype}; store numbers")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] not in (1, 3)):
        a = a[..., None]
    if a.ndim == 3:
        a = a[None]
    require(a.ndim == 4 and a.size > 0, f"input file {path}: images of shape {a.shape}; store [B, H, W, C] "
            "or [H, W, C]")
    unit = a.dtype == np.uint8
    x = a.astype(np.float32) / (255.0 if unit else 1.0)
    require(bool(np.all(np.isfinite(x))), f"input file {path}: the images hold NaN or inf; store finite values")
    return InputImages(path, x, unit)


def read_input(path: str) -> InputImages:
    """The images of ``path`` by its extension: .png or .npz."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".png":
        return read_png(path)
    if ext == ".npz":
        return read_npz(path)
    raise ConfigError(f"--input {path}: unknown file type {ext or '(none)'!r}; pass a .png image or an .npz "
                      f"with an array named {', '.join(NPZ_KEYS)}")


def images_for_spec(images: InputImages, spec: DataSpec) -> np.ndarray:
    """The input as a batch of the model's images [B, *spec.shape] in ``spec.value_range``: grayscale copied
    to RGB, RGB to grayscale by ITU-R BT.601 luma; a size or channel count that does not fit is one line."""
    require(spec.is_image, f"the model's data are vectors of shape {spec.shape}, not images; use an image model")
    (h, w, c), x = spec.shape, images.pixels
    want = f"{h}x{w}x{c} ({'grayscale' if c == 1 else 'RGB' if c == 3 else f'{c} channels'})"
    require(images.hw == (h, w), f"{images.path}: the images are {images.hw[0]}x{images.hw[1]}, but the model "
            f"takes {want}; resize the input to {h}x{w}")
    if x.shape[-1] != c:
        require(x.shape[-1] in (1, 3) and c in (1, 3), f"{images.path}: the images have {x.shape[-1]} channels, "
                f"but the model takes {want}; pass grayscale or RGB images")
        x = np.repeat(x, 3, axis=-1) if c == 3 else np.tensordot(x, LUMA, axes=([-1], [0]))[..., None]
    lo, hi = (float(v) for v in spec.value_range)
    if images.unit:
        return (lo + (hi - lo) * x).astype(np.float32)
    tol = 1e-4 * (hi - lo)
    require(float(x.min()) >= lo - tol and float(x.max()) <= hi + tol,
            f"{images.path}: the values span [{float(x.min()):g}, {float(x.max()):g}], outside the model's value "
            f"range [{lo:g}, {hi:g}]; rescale them to that range (or store uint8 pixels)")
    return np.clip(x, lo, hi).astype(np.float32)


def read_mask(path: str, hw: tuple[int, int]) -> np.ndarray:
    """A binary mask PNG of size ``hw`` as [H, W] float32 (1: observed, 0: to fill in): its values must be
    only 0 and 255, or only 0 and 1."""
    require(os.path.splitext(path)[1].lower() == ".png", f"--mask {path}: pass a PNG mask")
    img = _open_png(path, "mask")
    m = np.asarray(img.convert("L") if img.mode not in ("I;16", "I", "F") else img)
    require(m.shape[:2] == tuple(hw), f"mask {path} is {m.shape[0]}x{m.shape[1]}, but the input images are "
            f"{hw[0]}x{hw[1]}; pass a mask of the image's size")
    values = np.unique(m)
    if set(values.tolist()) <= {0, 255}:
        return (m == 255).astype(np.float32)
    if set(values.tolist()) <= {0, 1}:
        return (m == 1).astype(np.float32)
    shown = ", ".join(f"{v:g}" for v in values[:4].tolist()) + (", ..." if values.size > 4 else "")
    raise ConfigError(f"mask {path} is not binary (values {shown}); save it with only 0 (to fill in) and 255 "
                      "(observed)")


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """The measurement of one task: ``mask`` (an [H, W] array) or ``mask_kind`` for inpainting, ``scale`` for
    super-resolution, ``blur_sigma`` for deblurring; ``seed`` draws a random mask."""

    task: str
    mask: np.ndarray | None = None
    mask_kind: str | None = None
    scale: int | None = None
    blur_sigma: float | None = None
    seed: int = 0


def check_task_flags(task: str, given: Mapping[str, Any]) -> None:
    """One line for a flag of another task (``given``: flag name -> value, ``None``: not given), and for
    --mask together with --mask_kind."""
    require(task in TASKS, f"--task must be one of: {', '.join(TASKS)}, got {task!r}")
    for flag, value in given.items():
        owner = TASK_FLAGS[flag]
        if value is not None and owner != task:
            raise ConfigError(f"--{flag} applies to --task {owner}, not --task {task}; drop it")
    require(given.get("mask") is None or given.get("mask_kind") is None,
            "--mask and --mask_kind both given; pass one (a mask file, or a kind: box, random:P, half:SIDE)")


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"--mask_kind {what}: {text!r} is not a number") from None
    require(math.isfinite(v), f"--mask_kind {what}: {text!r} is not finite")
    return v


MaskKind = tuple[str, Any]


def parse_mask_kind(kind: str, hw: Sequence[int]) -> MaskKind:
    """--mask_kind for images of size ``hw``: ('box', (top, left, height, width)) for 'box' (the centred
    H/2 x W/2 box) or 'box:TOP,LEFT,HEIGHT,WIDTH' (inside the image), ('random', P) for 'random:P' with P in
    (0, 1), ('half', SIDE) for 'half:SIDE' (left, right, top, bottom)."""
    h, w = int(hw[0]), int(hw[1])
    name, _, arg = kind.partition(":")
    if name == "box" and not arg:
        return "box", ((h - h // 2) // 2, (w - w // 2) // 2, h // 2, w // 2)
    if name == "box":
        parts = arg.split(",")
        require(len(parts) == 4 and all(p.strip().isdigit() for p in parts),
                f"--mask_kind {kind!r}: write box:TOP,LEFT,HEIGHT,WIDTH with four non-negative integers")
        top, left, height, width = (int(p) for p in parts)
        require(height >= 1 and width >= 1 and top + height <= h and left + width <= w,
                f"--mask_kind {kind!r}: box ({top}, {left}, {height}, {width}) does not fit a {h}x{w} image; "
                "choose it inside the image")
        return "box", (top, left, height, width)
    if name == "random":
        keep = _number(arg, kind)
        require(0.0 < keep < 1.0, f"--mask_kind {kind!r}: the observed fraction P must be in (0, 1)")
        return "random", keep
    if name == "half":
        require(arg in ("left", "right", "top", "bottom"),
                f"--mask_kind {kind!r}: the side must be one of left, right, top, bottom")
        return "half", arg
    raise ConfigError(f"--mask_kind {kind!r}: choose box, box:TOP,LEFT,HEIGHT,WIDTH, random:P or half:SIDE")


def task_scale(settings: TaskSettings, hw: Sequence[int]) -> int:
    """The super-resolution factor (default :data:`DEFAULT_SCALE`), a divisor >= 2 of H and W."""
    h, w = int(hw[0]), int(hw[1])
    scale = DEFAULT_SCALE if settings.scale is None else int(settings.scale)
    require(scale >= 2 and h % scale == 0 and w % scale == 0,
            f"--scale {scale} does not divide the image size {h}x{w}; choose a divisor >= 2 of both")
    return scale


def task_blur_sigma(settings: TaskSettings, hw: Sequence[int]) -> float:
    """The blur's σ in pixels (default :data:`DEFAULT_BLUR_SIGMA`), finite, > 0, and its 3σ radius inside."""
    h, w = int(hw[0]), int(hw[1])
    sigma = DEFAULT_BLUR_SIGMA if settings.blur_sigma is None else float(settings.blur_sigma)
    require(math.isfinite(sigma) and sigma > 0, f"--blur_sigma must be finite and > 0, got {sigma:g}")
    require(math.ceil(3 * sigma) <= min(h, w), f"--blur_sigma {sigma:g} is too wide for {h}x{w} images "
            f"(kernel radius 3σ > {min(h, w)}); use --blur_sigma <= {min(h, w) / 3:g}")
    return sigma


def check_operator(settings: TaskSettings, shape: Sequence[int]) -> None:
    """Every check of the task's settings against images of ``shape`` (H, W, C) that building its operator
    makes (:func:`gm_jax.train.restore.build_operator`), without building it."""
    h, w, c = (int(v) for v in shape)
    if settings.task == "inpaint" and settings.mask is None:
        parse_mask_kind(settings.mask_kind or "box", (h, w))
    elif settings.task == "superres":
        task_scale(settings, (h, w))
    elif settings.task == "deblur":
        task_blur_sigma(settings, (h, w))
    elif settings.task == "colourize":
        require(c == 3, f"--task colourize needs an RGB model (C = 3), but the images have C = {c}; use inpaint, "
                "superres or deblur")


def check_method_options(given: Mapping[str, Any], default_method: str,
                         methods: Mapping[str, Sequence[str]]) -> str:
    """The method (given or ``default_method``); one line for an option of another inverse method (σ_y, a
    property of the measurement, goes with every method; a conditioned method such as sr3 takes none).
    ``methods``: method name -> the names of the options it takes (:func:`gm_jax.train.declared.restore_methods`)."""
    method = str(given.get("method") or default_method)
    require(method in methods, f"--method must be one of: {', '.join(methods)}, got {method!r}")
    method_names = {name for names in methods.values() for name in names} - {"sigma_y"}
    takes = list(methods[method])
    for name in given:
        if name in method_names and name not in takes:
            raise ConfigError(f"inverse method {method!r} does not take --{name}; it takes: "
                              + (", ".join("--" + n for n in takes) or "no options"))
    return method


def check_not_input(prefix: str, inputs: Sequence[str | None]) -> None:
    """One line when an output ``prefix``.png/.npz is one of the input files (inputs are never overwritten)."""
    for ext in (".png", ".npz"):
        out = os.path.abspath(prefix + ext)
        for path in inputs:
            if path and os.path.exists(path) and (os.path.abspath(path) == out or (
                    os.path.exists(out) and os.path.samefile(path, out))):
                raise ConfigError(f"--out {prefix} would overwrite the input {path}; choose another --out prefix")


__all__ = ["DEFAULT_BLUR_SIGMA", "DEFAULT_SCALE", "InputImages", "MaskKind", "NPZ_KEYS", "TASKS", "TASK_FLAGS",
           "TaskSettings", "check_method_options", "check_not_input", "check_operator", "check_task_flags",
           "images_for_spec", "parse_mask_kind", "read_input", "read_mask", "read_npz", "read_png",
           "task_blur_sigma", "task_scale"]
