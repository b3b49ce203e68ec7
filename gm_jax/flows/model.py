"""Normalizing-flow models: a bijector on top of a standard normal base density.

``Flow(bijector, event_shape)`` gives ``log_prob(x)`` by the change of variables and ``sample(key, num,
temperature)`` by inverting the bijector. Builders make RealNVP for vectors (2-D toy data, MLP couplings)
and a multi-scale RealNVP or Glow for images.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import check_choice, require
from gm_jax.flows.bijectors import (
    ActNorm,
    AffineCoupling,
    Chain,
    ConvConditioner,
    FactorOut,
    InvertibleConv1x1,
    MLPConditioner,
    Squeeze,
    Unsqueeze,
)

IMAGE_FLOWS = ("realnvp", "glow")


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
    """``log N(z; 0, I)`` summed over all but the batch axis: ``-0.5 * (|z|^2 + D log 2 pi)``."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * jnp.sum(flat**2 + jnp.log(2 * jnp.pi), axis=1)


class Flow(nn.Module):
    """A normalizing flow ``z = f(x)`` with ``z ~ N(0, I)`` (Dinh et al. 2017, eq. 3)."""

    bijector: nn.Module
    event_shape: tuple[int, ...]

    def __call__(self, x: jax.Array) -> jax.Array:
        """Same as :meth:`log_prob` (so that ``init(key, x)`` builds every parameter)."""
        return self.log_prob(x)

    def log_prob(self, x: jax.Array) -> jax.Array:
        """``log p(x) = log N(f(x); 0, I) + log|det df/dx|`` (Dinh et al. 2017, eq. 3), shape ``[B]``."""
        z, log_det = self.bijector.forward_and_log_det(x)
        return standard_normal_log_prob(z) + log_det

    def sample(self, key: jax.Array, num: int, temperature: jax.Array | float = 1.0) -> jax.Array:
        """``x = f^-1(T * z)``, ``z ~ N(0, I)``: ``temperature`` ``T`` (an array, so changing it does not
        recompile) scales the base standard deviation (Kingma & Dhariwal 2018, sec. 5, 'temperature')."""
        z = jax.random.normal(key, (num, *self.event_shape)) * jnp.asarray(temperature, jnp.float32)
        x, _ = self.bijector.inverse_and_log_det(z)
        return x


def realnvp_vector(dim: int, num_layers: int = 8, hidden: int = 64, depth: int = 2,
                   actnorm: bool = True) -> Flow:
    """RealNVP for vectors ``[B, dim]``: ``num_layers`` affine couplings with alternating masks and MLP
    conditioners (Dinh et al. 2017), each preceded by an ActNorm when ``actnorm``."""
    require(dim >= 2, f"a coupling flow needs vectors of dimension >= 2, got {dim}")
    require(num_layers >= 1, f"model.num_layers must be >= 1, got {num_layers}")
    layers = []
    for i in range(num_layers):
        if actnorm:
            layers.append(ActNorm())
        layers.append(AffineCoupling(MLPConditioner(hidden, depth), mask="checkerboard", parity=i % 2))
    return Flow(Chain(tuple(layers)), (dim,))


def _realnvp_level(shape: tuple[int, int, int], scales_left: int, steps: int, hidden: int) -> nn.Module:
    """One RealNVP scale (Dinh et al. 2017, sec. 3.6): checkerboard couplings, squeeze, channel couplings,
    factor out half, recurse; the last scale has checkerboard couplings only."""
    h, w, c = shape
    layers: list[nn.Module] = [AffineCoupling(ConvConditioner(hidden), "checkerboard", i % 2)
                               for i in range(steps)]
    if scales_left == 1:
        return Chain(tuple(layers))
    require(h % 2 == 0 and w % 2 == 0,
            f"image size {h}x{w} cannot be squeezed at this scale; use fewer model.num_scales")
    layers.append(Squeeze())
    layers += [AffineCoupling(ConvConditioner(hidden), "channel", i % 2) for i in range(steps)]
    inner = _realnvp_level((h // 2, w // 2, 2 * c), scales_left - 1, steps, hidden)
    layers += [FactorOut(inner), Unsqueeze()]
    return Chain(tuple(layers))


def _glow_level(shape: tuple[int, int, int], scales_left: int, steps: int, hidden: int) -> nn.Module:
    """One Glow scale (Kingma & Dhariwal 2018, Fig. 2): squeeze, ``steps`` x (ActNorm, invertible 1x1
    conv, affine coupling), factor out half and recurse (none at the last scale), unsqueeze."""
    h, w, c = shape
    require(h % 2 == 0 and w % 2 == 0,
            f"image size {h}x{w} cannot be squeezed at this scale; use fewer model.num_scales")
    layers: list[nn.Module] = [Squeeze()]
    for i in range(steps):
        layers += [ActNorm(), InvertibleConv1x1(seed=1000 * scales_left + i),
                   AffineCoupling(ConvConditioner(hidden), "channel", 0)]
    if scales_left > 1:
        layers.append(FactorOut(_glow_level((h // 2, w // 2, 2 * c), scales_left - 1, steps, hidden)))
    layers.append(Unsqueeze())
    return Chain(tuple(layers))


def image_flow(shape: tuple[int, int, int], kind: str = "glow", num_scales: int = 2,
               steps_per_scale: int = 4, hidden: int = 32) -> Flow:
    """A small multi-scale image flow on ``[B, H, W, C]``: 'realnvp' (Dinh et al. 2017, sec. 4.1) or
    'glow' (Kingma & Dhariwal 2018, sec. 3); the latent keeps the image shape."""
    check_choice("model.kind (image flow)", kind, IMAGE_FLOWS)
    require(len(shape) == 3, f"image flows need [H, W, C] examples, got shape {shape}")
    require(num_scales >= 1 and steps_per_scale >= 1,
            f"model.num_scales and model.steps_per_scale must be >= 1, got {num_scales}, {steps_per_scale}")
    h, w, _ = shape
    factor = 2 ** (num_scales if kind == "glow" else num_scales - 1)
    require(h % factor == 0 and w % factor == 0,
            f"{kind} with {num_scales} scales needs height and width divisible by {factor}, got {h}x{w}; "
            "use fewer model.num_scales or crop/pad the images")
    level = _glow_level if kind == "glow" else _realnvp_level
    return Flow(level(tuple(shape), num_scales, steps_per_scale, hidden), tuple(shape))


def num_dims(shape: tuple[int, ...]) -> int:
    """Number of scalar dimensions of one example."""
    return int(np.prod(shape))
