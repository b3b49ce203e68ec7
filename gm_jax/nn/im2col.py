"""Stride-1 2-D convolution whose weight gradient is one matrix product (im2col), for backends where the
convolution weight gradient is slow.

The forward pass is the cross-correlation of deep-learning convolutions,

    y[b, i, j, o] = Σ_{dy, dx, c} x̃[b, i + dy, j + dx, c] · K[dy, dx, c, o],

with ``x̃`` the input zero-padded by ``padding``. Its gradients, for an upstream gradient ``g = ∂L/∂y``, are

    ∂L/∂x = the transposed convolution of ``g`` with ``K`` (a forward convolution with the flipped,
            channel-swapped kernel: :func:`input_grad`), and
    ∂L/∂K[dy, dx, c, o] = Σ_{b, i, j} x̃[b, i + dy, j + dx, c] · g[b, i, j, o]  =  (Pᵀ G)[(dy, dx, c), o],

where ``P`` stacks the ``kh·kw`` shifted copies of ``x̃`` as columns (the im2col matrix, ``[B·H·W, kh·kw·C]``)
and ``G`` is ``g`` as ``[B·H·W, O]``. On XLA:CPU the convolution weight gradient runs 5–10× slower than
this single matmul (``../shared/PLATFORM.md``: ~14 GFLOP/s), which made a PixelCNN training step cost ~17
forward passes; with the im2col weight gradient a step costs ~4. The trade is memory: ``P`` is ``kh·kw``
times the input. ``weight_grad='auto'`` uses im2col on CPU and XLA's convolution gradient elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from gm_jax.core.errors import check_choice

Padding = tuple[tuple[int, int], tuple[int, int]]
WEIGHT_GRADS = ("auto", "im2col", "xla", "autodiff")


def _xla_conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def im2col(x: jax.Array, kernel_size: tuple[int, int], padding: Padding, out_hw: tuple[int, int]) -> jax.Array:
    """``[B·H·W, kh·kw·C]`` patches: column block ``(dy, dx)`` holds ``x̃[b, i + dy, j + dx, :]`` for output
    pixel ``(i, j)`` of an ``out_hw`` output (``x̃`` = ``x`` zero-padded by ``padding``)."""
    kh, kw = kernel_size
    h, w = out_hw
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    cols = [xp[:, dy:dy + h, dx:dx + w] for dy in range(kh) for dx in range(kw)]
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    return patches.reshape(-1, kh * kw * x.shape[-1])


def input_grad(g: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """∂L/∂x of a stride-1 convolution as a plain forward convolution: ``g`` zero-padded by
    ``(kh − 1 − top, kh − 1 − bottom)`` (likewise in width) cross-correlated with the kernel flipped in space
    and with its input and output channels swapped (the transposed convolution). Written out, rather than
    left to autodiff, because XLA:CPU runs autodiff's form (kernel layout ``01oi``) several times slower
    inside a ``while`` loop, where the kernel cannot be re-laid out once at compile time."""
    (top, bottom), (left, right) = padding
    kh, kw = kernel.shape[:2]
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    pad = ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right))
    return _xla_conv(g, flipped, pad)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_im2col_grad(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return _xla_conv(x, kernel, padding)


def _conv_fwd(x: jax.Array, kernel: jax.Array, padding: Padding) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _xla_conv(x, kernel, padding), (x, kernel)


def _conv_bwd(padding: Padding, residuals: tuple[jax.Array, jax.Array], g: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    dx = input_grad(g, kernel, padding)
    patches = im2col(x, kernel.shape[:2], padding, g.shape[1:3])
    dk = (patches.T @ g.reshape(-1, g.shape[-1])).reshape(kernel.shape)
    return dx, dk.astype(kernel.dtype)


_conv_im2col_grad.defvjp(_conv_fwd, _conv_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_xla_grad(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return _xla_conv(x, kernel, padding)


def _conv_xla_bwd(padding: Padding, residuals: tuple[jax.Array, jax.Array], g: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    _, vjp_k = jax.vjp(lambda k: _xla_conv(x, k, padding), kernel)  # the unused forward value is dead code
    (dk,) = vjp_k(g)
    return input_grad(g, kernel, padding), dk


_conv_xla_grad.defvjp(_conv_fwd, _conv_xla_bwd)


def conv2d(x: jax.Array, kernel: jax.Array, padding: Padding, weight_grad: str = "auto") -> jax.Array:
    """Stride-1 convolution ``x [B, H, W, C] ⋆ kernel [kh, kw, C, O]`` with explicit zero ``padding``
    ``((top, bottom), (left, right))`` (the cross-correlation in the module docstring). ``weight_grad``:
    'im2col' computes ``∂L/∂K = Pᵀ G`` as one matmul, 'xla' uses XLA's convolution weight gradient, 'auto'
    picks im2col on the CPU backend; all three take ∂L/∂x from :func:`input_grad`. 'autodiff' leaves both
    gradients to JAX's autodiff (the reference). All give the same values and gradients (up to float
    rounding)."""
    check_choice("weight_grad", weight_grad, WEIGHT_GRADS)
    padding = (tuple(int(p) for p in padding[0]), tuple(int(p) for p in padding[1]))
    if weight_grad == "auto":
        weight_grad = "im2col" if jax.default_backend() == "cpu" else "xla"
    if weight_grad == "autodiff":
        return _xla_conv(x, kernel, padding)
    if weight_grad == "xla":
        return _conv_xla_grad(x, kernel, padding)
    return _conv_im2col_grad(x, kernel, padding)


def same_padding(kernel_size: tuple[int, int]) -> Padding:
    """The zero padding of a stride-1 'SAME' convolution (as XLA's: any odd one out at the bottom/right)."""
    return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size)  # type: ignore[return-value]


class Conv(nn.Module):
    """A stride-1 'SAME' convolution with bias through :func:`conv2d`: the parameters (``kernel`` [kh, kw, C,
    O], ``bias`` [O]), their initialization and the computation dtype are those of ``flax.linen.Conv``, so
    either module loads the other's parameters; only the gradients are computed differently.
    ``weight_grad`` defaults to 'xla' (:func:`input_grad` and XLA's weight gradient): on XLA:CPU as fast as
    autodiff for a single training step and ~6x faster for a VJP inside a loop; 'im2col' is ~0.6x in a
    single step but ~10x faster in a rolled ``lax.scan`` of training steps
    (``experiments/conv_gradient_loops.py``, docs/results.md)."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    dtype: Any = None
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    weight_grad: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        return conv2d(x, kernel, same_padding(self.kernel_size), self.weight_grad) + bias
