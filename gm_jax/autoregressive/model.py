"""Gated PixelCNN without blind spot (van den Oord et al. 2016b, sec. 2.1–2.3).

Two stacks per layer, kernel size ``k = 2r + 1``:

- vertical stack: an unmasked ``(r + 1) × k`` convolution over rows ``i − r … i`` (all columns
  ``j − r … j + r``). Its output at row ``i`` may depend on the whole row ``i``, so it only ever reaches the
  horizontal stack shifted down by one row (:func:`gm_jax.autoregressive.masks.shift_down`): the horizontal
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

from gm_jax.autoregressive.masks import MaskedConv, shift_down
from gm_jax.core.errors import require


def gated_activation(a: jax.Array) -> jax.Array:
    """``tanh(a_f) ⊙ σ(a_g)`` with ``a = [a_f, a_g]`` split on the last axis (van den Oord et al. 2016b,
    eq. 2)."""
    f, g = jnp.split(a, 2, axis=-1)
    return jnp.tanh(f) * jax.nn.sigmoid(g)


class GatedPixelCNN(nn.Module):
    """``x [B, H, W, C]`` (data scaled to ``[-1, 1]``) → ``[B, H, W, C, params_per_color]``; output
    ``(i, j, c)`` depends only on sub-pixels before ``(i, j, c)`` in raster-then-colour order."""

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
        require(x.shape[-1] == self.num_colors,
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
