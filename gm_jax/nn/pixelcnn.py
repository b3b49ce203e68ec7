"""Masked convolutions and the gated PixelCNN network (van den Oord et al. 2016a, sec. 3.4; 2016b, sec. 2).

Shared by the PixelCNN image family (``gm_jax.autoregressive``) and the VQ-VAE code prior (``gm_jax.vq``),
so it lives below both. Likelihoods and sampling loops stay with the families.

Masks. Pixels are ordered in raster order (row by row, left to right) and, inside a pixel, by colour channel
R < G < B (channel ``c`` of the data is colour ``c``). Every feature map of the network is split into
``num_colors`` contiguous groups, feature ``i`` of ``n`` belonging to colour ``i * num_colors // n``.

A kernel position strictly before the centre in raster order is always connected. At the centre, input
feature of colour ``g_in`` reaches output feature of colour ``g_out`` iff

- type A (first layer, the data itself):  ``g_in <  g_out``  (a sub-pixel never sees itself),
- type B (later layers, features):        ``g_in <= g_out``  (a feature may see its own colour's features,
  which already exclude that sub-pixel).

Positions after the centre are cut. With one colour, type A removes the centre and type B keeps it.

Gated PixelCNN. Two stacks per layer, kernel size ``k = 2r + 1``:

- vertical stack: an unmasked ``(r + 1) × k`` convolution over rows ``i − r … i`` (all columns
  ``j − r … j + r``). Its output at row ``i`` may depend on the whole row ``i``, so it only ever reaches the
  horizontal stack shifted down by one row (:func:`shift_down`): the horizontal
  stack at ``(i, j)`` then sees every earlier row inside a cone that widens by ``r`` columns per layer.
- horizontal stack: a ``1 × (r + 1)`` convolution over columns ``j − r … j`` of row ``i`` whose centre is
  masked by colour (type A in the first layer, type B after), plus a 1×1 convolution of the shifted vertical
  pre-activation, a residual connection (from the second layer on) and a 1×1 type-B output convolution.

Both stacks use the gated activation ``y = tanh(W_f * x + V_f h) ⊙ σ(W_g * x + V_g h)`` (eq. 4), with
``h`` an optional class embedding (conditional PixelCNN, eq. 5). The head is ReLU → 1×1 (B) → ReLU → 1×1 (B)
to ``params_per_color`` outputs per colour: ``levels`` logits of a softmax, or ``3·M`` parameters of a
discretized logistic mixture. With enough layers (``L · r ≥ W − 1`` and ``L · r ≥ H − 1``) the receptive
field of ``(i, j, c)`` is exactly every earlier sub-pixel.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import check_choice, require
from gm_jax.nn.im2col import conv2d


def channel_groups(num_features: int, num_colors: int) -> np.ndarray:
    """Colour of each of ``num_features`` features: ``g_i = floor(i · num_colors / num_features)``
    (van den Oord et al. 2016a, fig. 2: features split into contiguous R, G, B groups)."""
    require(num_features >= num_colors,
            f"a masked layer needs at least one feature per colour, got {num_features} < {num_colors}")
    return (np.arange(num_features) * num_colors) // num_features


def autoregressive_mask(kernel_size: tuple[int, int], center: tuple[int, int], in_groups: np.ndarray,
                        out_groups: np.ndarray, mask_type: str) -> np.ndarray:
    """``[kh, kw, C_in, C_out]`` 0/1 mask: positions before ``center`` (raster order) kept, the centre
    connected by colour (type A ``g_in < g_out``, type B ``g_in <= g_out``), later positions cut
    (van den Oord et al. 2016a, sec. 3.4)."""
    check_choice("mask_type", mask_type, ("A", "B"))
    kh, kw = kernel_size
    cy, cx = center
    require(0 <= cy < kh and 0 <= cx < kw, f"mask centre {center} lies outside kernel {kernel_size}")
    mask = np.zeros((kh, kw, len(in_groups), len(out_groups)), np.float32)
    for dy in range(kh):
        for dx in range(kw):
            if (dy, dx) < (cy, cx):
                mask[dy, dx] = 1.0
    g_in, g_out = np.asarray(in_groups)[:, None], np.asarray(out_groups)[None, :]
    mask[cy, cx] = (g_in < g_out) if mask_type == "A" else (g_in <= g_out)
    return mask


class MaskedConv(nn.Module):
    """Convolution whose kernel is multiplied by :func:`autoregressive_mask` (``mask_type`` 'A' or 'B'), or
    left unmasked (``mask_type='none'``, used by the vertical stack, which only ever feeds the horizontal
    stack after a down shift). The weight gradient is one im2col matmul on CPU (:func:`gm_jax.nn.im2col.conv2d`).
    ``padding`` is explicit ``((top, bottom), (left, right))``; ``center`` is the
    kernel position aligned with the output pixel. ``out_repeat`` tiles the output colour groups (a layer
    whose output is split into the two halves of a gate gives both halves the same groups)."""

    features: int
    kernel_size: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    center: tuple[int, int]
    mask_type: str = "B"
    num_colors: int = 1
    out_repeat: int = 1
    weight_grad: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c_in = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel_size, c_in, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        if self.mask_type != "none":
            out_groups = np.tile(channel_groups(self.features // self.out_repeat, self.num_colors),
                                 self.out_repeat)
            mask = autoregressive_mask(self.kernel_size, self.center, channel_groups(c_in, self.num_colors),
                                       out_groups, self.mask_type)
            kernel = kernel * jnp.asarray(mask)
        return conv2d(x, kernel, self.padding, self.weight_grad) + bias


def masked_conv2d(features: int, kernel_size: int, mask_type: str, num_colors: int = 1,
                  name: str | None = None) -> MaskedConv:
    """The square ``k × k`` masked convolution of PixelCNN (van den Oord et al. 2016a, sec. 3.4), same
    output size as input (``k // 2`` zero padding on every side)."""
    require(kernel_size % 2 == 1, f"masked kernel size must be odd, got {kernel_size}")
    r = kernel_size // 2
    return MaskedConv(features, (kernel_size, kernel_size), ((r, r), (r, r)), (r, r), mask_type, num_colors,
                      name=name)


def shift_down(x: jax.Array) -> jax.Array:
    """Shift ``[B, H, W, C]`` down by one row (zero row on top): row ``i`` of the result is row ``i − 1``
    of ``x`` (van den Oord et al. 2016b, sec. 2.2: the vertical stack feeds the horizontal one shifted)."""
    return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def gated_activation(a: jax.Array) -> jax.Array:
    """``tanh(a_f) ⊙ σ(a_g)`` with ``a = [a_f, a_g]`` split on the last axis (van den Oord et al. 2016b,
    eq. 2)."""
    f, g = jnp.split(a, 2, axis=-1)
    return jnp.tanh(f) * jax.nn.sigmoid(g)


class GatedPixelCNN(nn.Module):
    """``x [B, H, W, C]`` (data scaled to ``[-1, 1]``) → ``[B, H, W, C, params_per_color]``; output
    ``(i, j, c)`` depends only on sub-pixels before ``(i, j, c)`` in raster-then-colour order. With
    ``num_colors = 1`` the input may have any number of channels, all describing the one variable of each
    position (e.g. a one-hot code), and the output is ``[B, H, W, 1, params_per_color]``."""

    num_colors: int
    params_per_color: int
    hidden: int = 32
    num_layers: int = 4
    kernel_size: int = 3
    num_classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        require(self.kernel_size % 2 == 1 and self.kernel_size >= 3,
                f"model.kernel_size must be odd and >= 3, got {self.kernel_size}")
        require(self.num_colors == 1 or x.shape[-1] == self.num_colors,
                f"input has {x.shape[-1]} channels, the model was built for {self.num_colors}")
        r, h_dim, colors = self.kernel_size // 2, self.hidden, self.num_colors
        cond = None
        if self.num_classes > 0:
            require(label is not None, "a class-conditional PixelCNN needs a label")
            cond = jax.nn.one_hot(label, self.num_classes)[:, None, None, :]
        v, h = x, x
        for layer in range(self.num_layers):
            mask = "A" if layer == 0 else "B"
            v_pre = MaskedConv(2 * h_dim, (r + 1, self.kernel_size), ((r, 0), (r, r)), (r, r), "none",
                               name=f"vertical_{layer}")(v)
            h_pre = MaskedConv(2 * h_dim, (1, r + 1), ((0, 0), (r, 0)), (0, r), mask, colors, out_repeat=2,
                               name=f"horizontal_{layer}")(h)
            h_pre = h_pre + nn.Dense(2 * h_dim, name=f"vertical_to_horizontal_{layer}")(shift_down(v_pre))
            if cond is not None:
                v_pre = v_pre + nn.Dense(2 * h_dim, use_bias=False, name=f"cond_vertical_{layer}")(cond)
                h_pre = h_pre + nn.Dense(2 * h_dim, use_bias=False, name=f"cond_horizontal_{layer}")(cond)
            v = gated_activation(v_pre)
            h_out = MaskedConv(h_dim, (1, 1), ((0, 0), (0, 0)), (0, 0), "B", colors,
                               name=f"horizontal_out_{layer}")(gated_activation(h_pre))
            h = h_out if layer == 0 else h + h_out
        out = MaskedConv(h_dim, (1, 1), ((0, 0), (0, 0)), (0, 0), "B", colors, name="head_0")(nn.relu(h))
        out = MaskedConv(colors * self.params_per_color, (1, 1), ((0, 0), (0, 0)), (0, 0), "B", colors,
                         name="head_1")(nn.relu(out))
        return out.reshape(out.shape[:-1] + (colors, self.params_per_color))
