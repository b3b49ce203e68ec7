"""Image grids (PNG via Pillow) and the loss curve (matplotlib, Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np


def to_uint8(images: np.ndarray, value_range: Sequence[float] = (-1.0, 1.0)) -> np.ndarray:
    """Map images from ``value_range`` to uint8 [0, 255], clipping what lies outside."""
    lo, hi = value_range
    x = (np.asarray(images, np.float32) - lo) / (hi - lo)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, value_range: Sequence[float] = (-1.0, 1.0), ncols: int | None = None,
              pad: int = 2) -> np.ndarray:
    """Tile ``[N, H, W, C]`` images into one ``[rows*(H+pad)+pad, cols*(W+pad)+pad, C]`` uint8 grid."""
    x = to_uint8(images, value_range)
    if x.ndim == 3:
        x = x[..., None]
    n, h, w, c = x.shape
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = x[i]
    return grid


def save_image_grid(images: np.ndarray, path: str, value_range: Sequence[float] = (-1.0, 1.0),
                    ncols: int | None = None, scale: int = 2) -> str:
    """Write ``images`` as one PNG grid (nearest-neighbour upscaled by ``scale``); returns the path."""
    from PIL import Image

    grid = make_grid(images, value_range, ncols)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path)
    return path


def save_prompt_grid(images: np.ndarray, prompts: Sequence[str], path: str,
                     value_range: Sequence[float] = (-1.0, 1.0), scale: int = 2, max_cols: int = 16) -> str:
    """One PNG of text-to-image samples: ``images`` [P·n, H, W, C] hold n images per prompt (prompt p's are rows
    p·n … p·n + n − 1), drawn as one grid row per prompt (at most ``max_cols`` images, the rest wrap onto
    further rows) under a white band with the prompt's text; nearest-neighbour upscaled by ``scale``."""
    from PIL import Image, ImageDraw

    x = np.asarray(images)
    n = x.shape[0] // max(len(prompts), 1)
    if n * len(prompts) != x.shape[0] or n == 0:
        raise ValueError(f"{x.shape[0]} images do not split into {len(prompts)} prompts")
    blocks = []
    for p, prompt in enumerate(prompts):
        grid = make_grid(x[p * n:(p + 1) * n], value_range, min(n, max_cols))
        img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).convert("RGB")
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        band = Image.new("RGB", (img.width, 14), "white")
        ImageDraw.Draw(band).text((4, 2), prompt, fill="black")
        blocks += [band, img]
    width = max(b.width for b in blocks)
    out = Image.new("RGB", (width, sum(b.height for b in blocks)), "white")
    top = 0
    for b in blocks:
        out.paste(b, (0, top))
        top += b.height
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out.save(path)
    return path


def save_scatter(points: np.ndarray, path: str, title: str = "") -> str:
    """Scatter plot of 2-D samples (toy data) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
    ax.set_aspect("equal")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_samples(samples: np.ndarray, path: str, value_range: Sequence[float]) -> str:
    """A PNG of samples: an image grid for ``[N, H, W, C]``, a scatter plot for ``[N, 2]``."""
    if samples.ndim == 2 and samples.shape[1] == 2:
        return save_scatter(samples, path)
    if samples.ndim == 2:  # flat vectors of a square image
        side = int(round(math.sqrt(samples.shape[1])))
        samples = samples.reshape(-1, side, side, 1)
    return save_image_grid(samples, path, value_range)


def save_loss_curve(steps: Sequence[int], values: dict[str, Sequence[float]], path: str) -> str:
    """Plot each named metric against the step into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, vals in values.items():
        ax.plot(steps, vals, label=name)
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
