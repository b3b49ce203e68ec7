"""Full-reference image quality: PSNR and SSIM of an estimate against its reference, per image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import ConfigError

SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _check_pair(what: str, estimate: jax.Array, reference: jax.Array) -> None:
    if tuple(estimate.shape) != tuple(reference.shape):
        raise ConfigError(f"{what}: estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} "
                          "differ in shape; pass images of one shape")


def psnr(estimate: jax.Array, reference: jax.Array, data_range: float = 2.0) -> jax.Array:
    """Peak signal-to-noise ratio per image, ``10 log10(R^2 / MSE)`` dB with peak-to-peak range ``R``
    (2 for images in ``[-1, 1]``); the estimate is clipped to ``[-R/2, R/2]`` first. Returns ``[B]``."""
    _check_pair("psnr", estimate, reference)
    est = jnp.clip(estimate, -data_range / 2, data_range / 2)
    mse = jnp.mean((est - reference).reshape(est.shape[0], -1) ** 2, axis=-1)
    return 10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, 1e-12))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalized 1-D Gaussian of ``size`` taps (the 2-D SSIM window is its outer product)."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def _local_mean(x: jax.Array, window: jax.Array) -> jax.Array:
    """The window-weighted mean of every valid (fully inside) window position: [B, H, W, C] ->
    [B, H - k + 1, W - k + 1, C], as two 1-D passes (the window is separable)."""
    k = window.shape[0]
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    rows = sum(window[i] * x[:, i:i + h] for i in range(k))
    return sum(window[j] * rows[:, :, j:j + w] for j in range(k))


def ssim(estimate: jax.Array, reference: jax.Array, data_range: float = 2.0, window_size: int = SSIM_WINDOW,
         sigma: float = SSIM_SIGMA) -> jax.Array:
    """Structural similarity per image (Wang et al. 2004, eq. 13 with their 11×11 Gaussian window, σ = 1.5,
    K1 = 0.01, K2 = 0.03): with window-weighted local means μ, variances σ² and covariance σ_xy,

        SSIM(x, y) = (2 μ_x μ_y + C1)(2 σ_xy + C2) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2)),

    C1 = (K1 R)², C2 = (K2 R)², averaged over every window position inside the image and over channels.
    Images [B, H, W, C] with H, W ≥ ``window_size``; the estimate is clipped to ``[-R/2, R/2]`` as in
    :func:`psnr`. Returns ``[B]``."""
    _check_pair("ssim", estimate, reference)
    if estimate.ndim != 4 or min(estimate.shape[1:3]) < window_size:
        raise ConfigError(f"ssim needs images [B, H, W, C] with H, W >= {window_size}, got "
                          f"{tuple(estimate.shape)}; pass a smaller window_size")
    x = jnp.clip(estimate, -data_range / 2, data_range / 2).astype(jnp.float32)
    y = jnp.asarray(reference, jnp.float32)
    window = jnp.asarray(gaussian_window(window_size, sigma))
    mu_x, mu_y = _local_mean(x, window), _local_mean(y, window)
    var_x = _local_mean(x * x, window) - mu_x ** 2
    var_y = _local_mean(y * y, window) - mu_y ** 2
    cov = _local_mean(x * y, window) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return jnp.mean(index.reshape(index.shape[0], -1), axis=-1)


__all__ = ["gaussian_window", "psnr", "ssim"]
