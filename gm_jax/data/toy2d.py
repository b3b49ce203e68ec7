"""Toy 2-D distributions as pure JAX samplers ``(key, num) -> float32 [num, 2]``.

Scales (documented per sampler, and used as ``value_range`` by the pipeline):

- ``eight_gaussians``: 8 isotropic Gaussians, std 0.02, centres on the circle of radius 2 at angles
  2*pi*k/8 (the ring of Metz et al. 2017, "Unrolled GANs"). Values within about [-2.1, 2.1].
- ``twenty_five_gaussians``: 25 isotropic Gaussians, std 0.05, centres on the grid {-4,-2,0,2,4}^2
  (the grid of Srivastava et al. 2017, "VEEGAN", and Lin et al. 2018, "PacGAN"). Values within [-4.3, 4.3].
- ``two_moons``: two interleaved half circles of radius 1 (upper: (cos t, sin t); lower:
  (1 - cos t, 0.5 - sin t), t ~ U[0, pi]) plus Gaussian noise of std 0.1. Values within about [-1.5, 2.5].
- ``swiss_roll``: (t cos t, t sin t) / 5 with t = 1.5*pi*(1 + 2u), u ~ U[0, 1], plus Gaussian noise of
  std 0.05 (the 2-D roll used by Grathwohl et al. 2019, "FFJORD"). Values within about [-3, 3].
- ``checkerboard``: uniform on the 8 unit squares of [-2, 2]^2 where floor(x) + floor(y) is even.
- ``rings``: 4 concentric circles of radii 0.5, 1, 1.5, 2 chosen with equal probability, angle uniform,
  plus Gaussian noise of std 0.02. Values within about [-2.1, 2.1].

The Gaussian mixtures' centres and std are exported for mode counting and exact log-densities.
Every sampler is jitted with ``num`` static (one compilation per sample count).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

EIGHT_GAUSSIANS_STD = 0.02
EIGHT_GAUSSIANS_CENTRES = np.stack([2.0 * np.cos(2 * np.pi * np.arange(8) / 8),
                                    2.0 * np.sin(2 * np.pi * np.arange(8) / 8)], axis=1).astype(np.float32)
TWENTY_FIVE_GAUSSIANS_STD = 0.05
TWENTY_FIVE_GAUSSIANS_CENTRES = np.stack(np.meshgrid(np.arange(-4.0, 5.0, 2.0), np.arange(-4.0, 5.0, 2.0),
                                                     indexing="ij"), axis=-1).reshape(25, 2).astype(np.float32)
RING_RADII = np.array([0.5, 1.0, 1.5, 2.0], np.float32)


def _mixture_sample(key: jax.Array, num: int, centres: np.ndarray, std: float) -> jax.Array:
    key_mode, key_noise = jax.random.split(key)
    mode = jax.random.randint(key_mode, (num,), 0, centres.shape[0])
    return jnp.asarray(centres)[mode] + std * jax.random.normal(key_noise, (num, 2), jnp.float32)


@functools.partial(jax.jit, static_argnums=1)
def eight_gaussians(key: jax.Array, num: int) -> jax.Array:
    """Equal-weight mixture of 8 N(mu_k, 0.02^2 I), mu_k = 2 (cos 2 pi k/8, sin 2 pi k/8) (Metz et al. 2017)."""
    return _mixture_sample(key, num, EIGHT_GAUSSIANS_CENTRES, EIGHT_GAUSSIANS_STD)


@functools.partial(jax.jit, static_argnums=1)
def twenty_five_gaussians(key: jax.Array, num: int) -> jax.Array:
    """Equal-weight mixture of 25 N(mu, 0.05^2 I), mu in {-4,-2,0,2,4}^2 (Srivastava et al. 2017, VEEGAN)."""
    return _mixture_sample(key, num, TWENTY_FIVE_GAUSSIANS_CENTRES, TWENTY_FIVE_GAUSSIANS_STD)


@jax.jit
def gaussian_mixture_log_density(x: jax.Array, centres: jax.Array, std: float) -> jax.Array:
    """Exact log p(x) of the equal-weight isotropic mixture: logsumexp_k log N(x; mu_k, std^2 I) - log K."""
    centres = jnp.asarray(centres, jnp.float32)
    sq = jnp.sum((x[:, None, :] - centres[None]) ** 2, axis=-1)
    dim = x.shape[-1]
    log_normal = -0.5 * sq / std**2 - dim * jnp.log(std) - 0.5 * dim * jnp.log(2 * jnp.pi)
    return jax.scipy.special.logsumexp(log_normal, axis=1) - jnp.log(centres.shape[0])


@functools.partial(jax.jit, static_argnums=1)
def two_moons(key: jax.Array, num: int, noise: float = 0.1) -> jax.Array:
    """Two half circles: (cos t, sin t) and (1 - cos t, 0.5 - sin t), t ~ U[0, pi], + N(0, noise^2 I)."""
    key_moon, key_t, key_noise = jax.random.split(key, 3)
    lower = jax.random.bernoulli(key_moon, 0.5, (num,))
    t = jax.random.uniform(key_t, (num,), jnp.float32, 0.0, jnp.pi)
    upper_xy = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    lower_xy = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=1)
    xy = jnp.where(lower[:, None], lower_xy, upper_xy)
    return xy + noise * jax.random.normal(key_noise, (num, 2), jnp.float32)


@functools.partial(jax.jit, static_argnums=1)
def swiss_roll(key: jax.Array, num: int, noise: float = 0.05) -> jax.Array:
    """(t cos t, t sin t) / 5 with t = 1.5 pi (1 + 2u), u ~ U[0, 1], + N(0, noise^2 I) (FFJORD's 2-D roll)."""
    key_t, key_noise = jax.random.split(key)
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(key_t, (num,), jnp.float32))
    xy = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1) / 5.0
    return xy + noise * jax.random.normal(key_noise, (num, 2), jnp.float32)


@functools.partial(jax.jit, static_argnums=1)
def checkerboard(key: jax.Array, num: int) -> jax.Array:
    """Uniform on {(x, y) in [-2, 2)^2 : floor(x) + floor(y) even}: x ~ U[-2, 2), y in the matching squares."""
    key_x, key_y, key_row = jax.random.split(key, 3)
    x = jax.random.uniform(key_x, (num,), jnp.float32, -2.0, 2.0)
    # y in [-2, -1) or [0, 1) (even floors), shifted up by one when floor(x) is odd
    y = jax.random.uniform(key_y, (num,), jnp.float32) - 2.0 + 2.0 * jax.random.randint(key_row, (num,), 0, 2)
    y = y + jnp.mod(jnp.floor(x), 2.0)
    return jnp.stack([x, y], axis=1)


@functools.partial(jax.jit, static_argnums=1)
def rings(key: jax.Array, num: int, noise: float = 0.02) -> jax.Array:
    """Radius r ~ U{0.5, 1, 1.5, 2}, angle ~ U[0, 2 pi): (r cos a, r sin a) + N(0, noise^2 I)."""
    key_r, key_a, key_noise = jax.random.split(key, 3)
    radius = jnp.asarray(RING_RADII)[jax.random.randint(key_r, (num,), 0, RING_RADII.size)]
    angle = jax.random.uniform(key_a, (num,), jnp.float32, 0.0, 2 * jnp.pi)
    xy = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    return xy + noise * jax.random.normal(key_noise, (num, 2), jnp.float32)


TOY_SAMPLERS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "eight_gaussians": eight_gaussians, "twenty_five_gaussians": twenty_five_gaussians,
    "two_moons": two_moons, "swiss_roll": swiss_roll, "checkerboard": checkerboard, "rings": rings,
}
# A range holding (nearly) all of each distribution's mass, per the scales documented above.
TOY_VALUE_RANGES: dict[str, tuple[float, float]] = {
    "eight_gaussians": (-2.1, 2.1), "twenty_five_gaussians": (-4.3, 4.3), "two_moons": (-1.5, 2.5),
    "swiss_roll": (-3.0, 3.0), "checkerboard": (-2.0, 2.0), "rings": (-2.1, 2.1),
}
