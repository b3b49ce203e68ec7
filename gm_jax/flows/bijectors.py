"""Bijectors for normalizing flows: one small protocol and the layers of RealNVP and Glow.

A bijector is a linen module with two methods

    forward_and_log_det(x) -> (y, log|det dy/dx|)       data -> latent (the normalizing direction)
    inverse_and_log_det(y) -> (x, log|det dx/dy|)       latent -> data (the sampling direction)

acting on a batch ``[B, ...]`` and returning one log-determinant per example (shape ``[B]``). The
change of variables (Dinh et al. 2017, eq. 3) then gives ``log p(x) = log p_Z(f(x)) + log|det df/dx|``.
Every bijector here keeps the shape of its input except :class:`Squeeze` / :class:`Unsqueeze`.

Parameters are created lazily on the first call (``module.init(key, x, method="forward_and_log_det")``),
which is what makes the data-dependent initialization of :class:`ActNorm` possible.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# dequantization lives in gm_jax.core (shared with flow matching); re-exported for existing callers
from gm_jax.core.errors import check_choice, require

MASKS = ("checkerboard", "channel")


def coupling_mask(shape: tuple[int, ...], kind: str, parity: int) -> jax.Array:
    """Binary mask ``m`` of one example's ``shape`` for an affine coupling (Dinh et al. 2017, sec. 3.4).

    Images ``[H, W, C]``: 'checkerboard' is ``m[h, w, :] = (h + w + parity) mod 2``; 'channel' keeps the
    first ``C // 2`` channels (``parity = 1`` keeps the others). Vectors ``[D]``: 'checkerboard'
    alternates ``m[i] = (i + parity) mod 2``; 'channel' keeps the first ``D // 2`` entries.
    """
    check_choice("coupling mask", kind, MASKS)
    if kind == "checkerboard":
        grid = np.indices(shape[:-1] if len(shape) == 3 else shape).sum(axis=0)
        mask = (grid + parity) % 2
        if len(shape) == 3:
            mask = np.broadcast_to(mask[..., None], shape)
    else:
        features = shape[-1]
        require(features >= 2, f"a 'channel' coupling mask needs >= 2 channels, got shape {shape}; "
                               "squeeze first or use mask='checkerboard'")
        mask = (np.arange(features) < features // 2).astype(np.int64)
        mask = mask if parity % 2 == 0 else 1 - mask
        mask = np.broadcast_to(mask, shape)
    return jnp.asarray(mask, jnp.float32)


def _sum_per_example(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


class MLPConditioner(nn.Module):
    """Shift/log-scale network for vector couplings: ``[B, D] -> [B, 2D]``, ReLU MLP, last layer zero
    (so every coupling starts as the identity, Kingma & Dhariwal 2018, sec. 3.3)."""

    hidden: int = 64
    num_layers: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for _ in range(self.num_layers):
            h = nn.relu(nn.Dense(self.hidden)(h))
        return nn.Dense(2 * x.shape[-1], kernel_init=nn.initializers.zeros)(h)


class ConvConditioner(nn.Module):
    """Shift/log-scale network for image couplings: 3x3 conv, 1x1 conv, zero 3x3 conv to ``2C``
    channels (the Glow coupling network, Kingma & Dhariwal 2018, sec. 3.3)."""

    hidden: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.relu(nn.Conv(self.hidden, (3, 3))(x))
        h = nn.relu(nn.Conv(self.hidden, (1, 1))(h))
        return nn.Conv(2 * x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(h)


class AffineCoupling(nn.Module):
    """Affine coupling layer (RealNVP, Dinh et al. 2017, eqs. 7-9 with masks, eq. 9).

    ``y = m*x + (1-m) * (x * exp(s(m*x)) + t(m*x))``,  ``log|det| = sum((1-m) * s)``.
    ``s = exp(g) * tanh(raw)`` keeps the log-scale bounded (``g`` is a learned per-feature gain).
    ``conditioner`` maps ``m*x`` to ``[..., 2C]`` (raw log-scale, shift).
    """

    conditioner: nn.Module
    mask: str = "checkerboard"
    parity: int = 0

    @nn.compact
    def _log_scale_and_shift(self, x_masked: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = self.conditioner(x_masked)
        raw, shift = jnp.split(out, 2, axis=-1)
        gain = self.param("log_scale_gain", nn.initializers.zeros, (x_masked.shape[-1],))
        log_scale = jnp.exp(gain) * jnp.tanh(raw)
        return log_scale * (1 - m), shift * (1 - m)

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``y = m*x + (1-m)*(x*exp(s) + t)`` (Dinh et al. 2017, eq. 9)."""
        m = coupling_mask(x.shape[1:], self.mask, self.parity)
        s, t = self._log_scale_and_shift(x * m, m)
        return x * jnp.exp(s) + t, _sum_per_example(s)

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x = m*y + (1-m)*(y - t)*exp(-s)`` (Dinh et al. 2017, eq. 8 inverted)."""
        m = coupling_mask(y.shape[1:], self.mask, self.parity)
        s, t = self._log_scale_and_shift(y * m, m)
        return (y - t) * jnp.exp(-s), -_sum_per_example(s)


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + b) * exp(log_s)`` (Kingma & Dhariwal 2018, Table 1, row 1).

    ``log|det| = (number of positions) * sum(log_s)``. Data-dependent initialization: on the first call
    (inside ``init``) ``b = -mean(x)`` and ``log_s = -log(std(x) + eps)`` over the batch and spatial
    axes, so the first batch leaves this layer with zero mean and unit variance per channel. Initialize
    through ``forward_and_log_det`` with a data batch (the family does); an initialization through the
    inverse would use the latent batch instead.
    """

    eps: float = 1e-6

    @nn.compact
    def _params(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        axes = tuple(range(x.ndim - 1))
        bias = self.param("bias", lambda _: -jnp.mean(x, axis=axes))
        log_scale = self.param("log_scale", lambda _: -jnp.log(jnp.std(x, axis=axes) + self.eps))
        return bias, log_scale

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``y = (x + b) * exp(log_s)``."""
        b, log_s = self._params(x)
        positions = int(np.prod(x.shape[1:-1]))
        return (x + b) * jnp.exp(log_s), jnp.full((x.shape[0],), positions * jnp.sum(log_s))

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x = y * exp(-log_s) - b``."""
        b, log_s = self._params(y)
        positions = int(np.prod(y.shape[1:-1]))
        return y * jnp.exp(-log_s) - b, jnp.full((y.shape[0],), -positions * jnp.sum(log_s))


class InvertibleConv1x1(nn.Module):
    """Invertible 1x1 convolution with LU parametrization (Kingma & Dhariwal 2018, eq. 10).

    ``W = P L (U + diag(exp(log_s)))`` with ``P`` a fixed permutation (drawn from ``seed`` with numpy),
    ``L`` unit lower-triangular and ``U`` strictly upper-triangular; ``log|det| = H*W*sum(log_s)``.
    ``L``, ``U`` and ``log_s`` start at zero, so ``W = P`` (an orthogonal start, like Glow's random
    rotation). The sign of ``diag`` is fixed to +1: no continuous change of the weights can flip it.
    """

    seed: int = 0

    @nn.compact
    def _weight_parts(self, channels: int) -> tuple[np.ndarray, jax.Array, jax.Array, jax.Array]:
        perm = np.eye(channels, dtype=np.float32)[np.random.RandomState(self.seed).permutation(channels)]
        lower = self.param("lower", nn.initializers.zeros, (channels, channels))
        upper = self.param("upper", nn.initializers.zeros, (channels, channels))
        log_s = self.param("log_s", nn.initializers.zeros, (channels,))
        lower = jnp.tril(lower, -1) + jnp.eye(channels)
        upper = jnp.triu(upper, 1) + jnp.diag(jnp.exp(log_s))
        return perm, lower, upper, log_s

    def weight(self, channels: int) -> jax.Array:
        """The ``[C, C]`` matrix ``W = P L U`` (acting as ``y = W x`` at every position)."""
        perm, lower, upper, _ = self._weight_parts(channels)
        return perm @ lower @ upper

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``y = W x`` per position, ``log|det| = H*W*sum(log_s)``."""
        perm, lower, upper, log_s = self._weight_parts(x.shape[-1])
        y = jnp.einsum("ij,...j->...i", perm @ lower @ upper, x)
        positions = int(np.prod(x.shape[1:-1]))
        return y, jnp.full((x.shape[0],), positions * jnp.sum(log_s))

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x = U^-1 L^-1 P^T y`` by two triangular solves."""
        perm, lower, upper, log_s = self._weight_parts(y.shape[-1])
        flat = y.reshape(-1, y.shape[-1]) @ perm  # rows of P^T y
        flat = jax.scipy.linalg.solve_triangular(lower, flat.T, lower=True, unit_diagonal=True)
        flat = jax.scipy.linalg.solve_triangular(upper, flat, lower=False)
        positions = int(np.prod(y.shape[1:-1]))
        return flat.T.reshape(y.shape), jnp.full((y.shape[0],), -positions * jnp.sum(log_s))


def squeeze(x: jax.Array) -> jax.Array:
    """Space-to-depth ``[B, H, W, C] -> [B, H/2, W/2, 4C]`` (Dinh et al. 2017, sec. 3.6, Fig. 3)."""
    b, h, w, c = x.shape
    require(h % 2 == 0 and w % 2 == 0,
            f"squeeze needs even height and width, got {h}x{w}; crop or pad the images, or use fewer scales")
    x = x.reshape(b, h // 2, 2, w // 2, 2, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(y: jax.Array) -> jax.Array:
    """Depth-to-space, the inverse of :func:`squeeze`: ``[B, H, W, 4C] -> [B, 2H, 2W, C]``."""
    b, h, w, c4 = y.shape
    require(c4 % 4 == 0, f"unsqueeze needs a channel count divisible by 4, got {c4}")
    c = c4 // 4
    y = y.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, 2 * h, 2 * w, c)


class Squeeze(nn.Module):
    """Bijector form of :func:`squeeze` (a permutation: ``log|det| = 0``)."""

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Space-to-depth, log-det 0."""
        return squeeze(x), jnp.zeros((x.shape[0],))

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Depth-to-space, log-det 0."""
        return unsqueeze(y), jnp.zeros((y.shape[0],))


class Unsqueeze(nn.Module):
    """Bijector form of :func:`unsqueeze` (the inverse of :class:`Squeeze`)."""

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Depth-to-space, log-det 0."""
        return unsqueeze(x), jnp.zeros((x.shape[0],))

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Space-to-depth, log-det 0."""
        return squeeze(y), jnp.zeros((y.shape[0],))


class FactorOut(nn.Module):
    """Multi-scale factor-out (Dinh et al. 2017, sec. 3.6, eq. 13).

    The first ``C // 2`` channels go straight to the latent (they are modelled by the base density from
    here on); ``inner`` transforms the other channels and must keep their shape (wrap a squeezing level
    as ``Chain([Squeeze(), ..., Unsqueeze()])``). ``log|det|`` is that of ``inner``.
    """

    inner: nn.Module

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``y = concat(x_1, inner(x_2))``."""
        k = x.shape[-1] // 2
        require(k >= 1, f"FactorOut needs >= 2 channels, got shape {x.shape[1:]}; squeeze first")
        rest, log_det = self.inner.forward_and_log_det(x[..., k:])
        return jnp.concatenate([x[..., :k], rest], axis=-1), log_det

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x = concat(y_1, inner^-1(y_2))``."""
        k = y.shape[-1] // 2
        require(k >= 1, f"FactorOut needs >= 2 channels, got shape {y.shape[1:]}; squeeze first")
        rest, log_det = self.inner.inverse_and_log_det(y[..., k:])
        return jnp.concatenate([y[..., :k], rest], axis=-1), log_det


class Chain(nn.Module):
    """Composition ``f_n o ... o f_1`` (forward applies ``bijectors`` in order); log-dets add up by the
    chain rule (Dinh et al. 2017, eq. 3 applied layer by layer)."""

    bijectors: Sequence[nn.Module]

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Apply every bijector in order and sum their log-determinants."""
        total = jnp.zeros((x.shape[0],))
        for bijector in self.bijectors:
            x, log_det = bijector.forward_and_log_det(x)
            total = total + log_det
        return x, total

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Invert every bijector in reverse order and sum their log-determinants."""
        total = jnp.zeros((y.shape[0],))
        for bijector in reversed(self.bijectors):
            y, log_det = bijector.inverse_and_log_det(y)
            total = total + log_det
        return y, total
