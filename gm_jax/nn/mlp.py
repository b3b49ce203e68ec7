"""Multi-layer perceptron: a stack of affine maps with a pointwise non-linearity between them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """``h_{l+1} = act(W_l h_l + b_l)`` for every layer but the last, which is affine only (no activation
    unless ``activate_final``). ``features`` lists the output width of each layer; the input is ``[..., d]``
    and any leading axes are kept."""

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    activate_final: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.features):
            x = nn.Dense(width, name=f"dense_{i}")(x)
            if i < len(self.features) - 1 or self.activate_final:
                x = self.activation(x)
        return x
