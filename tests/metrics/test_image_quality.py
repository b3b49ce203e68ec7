"""PSNR and SSIM against closed forms and a float64 loop over every window."""

import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.metrics import psnr, ssim
from gm_jax.metrics.image_quality import gaussian_window


def ssim_loop(x: np.ndarray, y: np.ndarray, r: float = 2.0, k: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Wang et al. 2004 eq. 13 window by window in float64, with the 2-D window built directly."""
    t = np.arange(k) - (k - 1) / 2
    w2 = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma ** 2))
    w2 /= w2.sum()
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    x = np.clip(x.astype(np.float64), -r / 2, r / 2)
    y = y.astype(np.float64)
    out = []
    for b in range(x.shape[0]):
        vals = []
        for c in range(x.shape[3]):
            for i in range(x.shape[1] - k + 1):
                for j in range(x.shape[2] - k + 1):
                    px, py = x[b, i:i + k, j:j + k, c], y[b, i:i + k, j:j + k, c]
                    mx, my = np.sum(w2 * px), np.sum(w2 * py)
                    vx, vy = np.sum(w2 * (px - mx) ** 2), np.sum(w2 * (py - my) ** 2)
                    cxy = np.sum(w2 * (px - mx) * (py - my))
                    vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
        out.append(np.mean(vals))
    return np.array(out)


def test_ssim_equals_a_window_by_window_reference():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (3, 16, 14, 2)).astype(np.float32)
    y = np.clip(x + 0.3 * rng.randn(*x.shape), -1, 1).astype(np.float32)
    y[2] = -0.5 * x[2] + 0.2  # a negatively correlated pair: SSIM < 0 on the structure term
    np.testing.assert_allclose(ssim(jnp.asarray(y), jnp.asarray(x)), ssim_loop(y, x), atol=2e-5)
    assert float(ssim(jnp.asarray(y), jnp.asarray(x))[2]) < 0


def test_ssim_closed_forms():
    rng = np.random.RandomState(1)
    x = jnp.asarray(rng.uniform(-1, 1, (2, 12, 12, 1)), jnp.float32)
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-5)
    # two constant images a, b: variances vanish, so SSIM = (2ab + C1) / (a² + b² + C1)
    a, b = 0.3, -0.2
    c1 = (0.01 * 2) ** 2
    got = ssim(jnp.full((1, 11, 11, 1), a), jnp.full((1, 11, 11, 1), b))
    np.testing.assert_allclose(got, (2 * a * b + c1) / (a * a + b * b + c1), rtol=1e-4)
    # symmetric in its arguments (before clipping) and at most 1
    y = jnp.clip(x + 0.2, -1, 1)
    np.testing.assert_allclose(ssim(x, y), ssim(y, x), atol=1e-6)
    assert np.all(np.asarray(ssim(x, y)) <= 1.0)


def test_gaussian_window_and_errors():
    w = gaussian_window(11, 1.5)
    assert w.shape == (11,) and abs(float(w.sum()) - 1) < 1e-6 and int(np.argmax(w)) == 5
    with pytest.raises(ConfigError, match="differ in shape"):
        ssim(jnp.zeros((1, 12, 12, 1)), jnp.zeros((1, 12, 11, 1)))
    with pytest.raises(ConfigError, match="H, W >= 11"):
        ssim(jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 8, 8, 1)))
    with pytest.raises(ConfigError, match="differ in shape"):
        psnr(jnp.zeros((1, 4)), jnp.zeros((2, 4)))
