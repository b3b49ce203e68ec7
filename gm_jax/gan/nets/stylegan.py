"""A small StyleGAN2-style generator (Karras et al. 2019; 2020): mapping network with the equalised learning
rate, synthesis network of modulated/demodulated convolutions with noise inputs, style mixing and the
truncation trick."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import require


def modulate_weights(weight: jax.Array, style: jax.Array, demodulate: bool = True,
                     epsilon: float = 1e-8) -> jax.Array:
    """Weight (de)modulation of StyleGAN2 (Karras et al. 2020, eqs. 1 and 3):
    ``w'_ijk = s_i w_ijk`` and ``w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps)``.

    ``weight`` ``[kh, kw, in, out]``, ``style`` ``[B, in]`` -> per-example kernels ``[B, kh, kw, in, out]``.
    """
    w = weight[None] * style[:, None, None, :, None]
    if demodulate:
        w = w * jax.lax.rsqrt(jnp.sum(w ** 2, axis=(1, 2, 3), keepdims=True) + epsilon)
    return w


def flat_normal(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """Standard normal draws of ``shape`` made as one flat vector and reshaped: the same distribution as
    ``jax.random.normal(key, shape)``, but XLA:CPU compiles the flat draw several times faster than a
    multi-axis one (measured: ~0.3 s against ~2 s per 4-D draw), which matters for the per-layer noise."""
    size = 1
    for d in shape:
        size *= int(d)
    return jax.random.normal(key, (size,), dtype).reshape(shape)


def demodulation_scale(weight: jax.Array, style: jax.Array, epsilon: float = 1e-8) -> jax.Array:
    """Demodulation coefficients ``d_j = 1 / sqrt(sum_{i,k} (s_i w_ijk)^2 + eps)`` (Karras et al. 2020,
    eq. 3) for ``weight`` ``[kh, kw, in, out]`` and styles ``[B, in]`` -> ``[B, out]``, computed without the
    per-example kernels: ``sum_{i,k} s_i^2 w_ijk^2 = (s^2) @ (sum_k w_ijk^2)``."""
    return jax.lax.rsqrt((style ** 2) @ jnp.sum(weight ** 2, axis=(0, 1)) + epsilon)


class ModulatedConv(nn.Module):
    """Modulated convolution (Karras et al. 2020, Sec. 2.2): a learned affine map of ``w`` gives the style
    ``s``; the kernel (equalised learning rate, He scaling at run time) is modulated per example and
    optionally demodulated, then convolved ('SAME' padding), plus a bias.

    Computed in the equivalent non-fused form of the paper's implementation: scale the input channels by
    ``s``, convolve with the shared kernel, scale the output channels by :func:`demodulation_scale`; this
    equals convolving each example with :func:`modulate_weights` (tested) with one ordinary convolution."""

    features: int
    kernel_size: int = 3
    demodulate: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", flat_normal, (k, k, cin, self.features))
        kernel = kernel / jnp.sqrt(k * k * cin)
        style = nn.Dense(cin, bias_init=nn.initializers.ones, name="affine")(w)
        h = jax.lax.conv_general_dilated(x * style[:, None, None, :], kernel, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.demodulate:
            h = h * demodulation_scale(kernel, style)[:, None, None, :]
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return h + bias


class NoiseInput(nn.Module):
    """Per-pixel noise scaled by a learned per-channel strength (Karras et al. 2019, Sec. 2 'B').

    The noise is drawn from the ``'noise'`` rng stream passed to ``apply`` (``rngs={'noise': key}``);
    without that stream no noise is added, which gives a deterministic generator."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        strength = self.param("strength", nn.initializers.zeros, (x.shape[-1],))
        if not self.has_rng("noise"):
            return x
        noise = flat_normal(self.make_rng("noise"), x.shape[:-1] + (1,), x.dtype)
        return x + strength * noise


class EqualizedDense(nn.Module):
    """Dense layer with the equalised learning rate and a learning-rate multiplier (Karras et al. 2018,
    Sec. 4.1; Karras et al. 2019, App. C): parameters ``W ~ N(0, 1 / lr_mul^2)``, ``b = 0``, used as
    ``x (lr_mul W / sqrt(fan_in)) + lr_mul b``, so the layer starts He-initialised and a gradient step moves
    it ``lr_mul`` times as far as a plain layer's."""

    features: int
    lr_mul: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.normal(1.0 / self.lr_mul), (fan_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ (kernel * (self.lr_mul / jnp.sqrt(fan_in))) + bias * self.lr_mul


class MappingNetwork(nn.Module):
    """StyleGAN mapping network ``f: z -> w`` (Karras et al. 2019, Sec. 2): pixel normalisation of z, then
    ``num_layers`` :class:`EqualizedDense` layers with LeakyReLU(0.2) and the paper's learning-rate
    multiplier ``lr_mul`` (0.01: the mapping learns 100 times slower than the synthesis network, which
    keeps ``w`` from collapsing to a constant)."""

    w_dim: int = 64
    num_layers: int = 4
    lr_mul: float = 0.01

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = z * jax.lax.rsqrt(jnp.mean(z ** 2, axis=-1, keepdims=True) + 1e-8)
        for i in range(self.num_layers):
            h = nn.leaky_relu(EqualizedDense(self.w_dim, self.lr_mul, name=f"Dense_{i}")(h), 0.2)
        return h


def synthesis_base(resolution: int) -> tuple[int, int]:
    """Side of the learned constant (4 to 7) and number of x2 upsamplings that reach ``resolution``:
    16 -> (4, 2), 28 -> (7, 2), 32 -> (4, 3), 4 -> (4, 0)."""
    base, n = int(resolution), 0
    while base % 2 == 0 and base > 7:
        base, n = base // 2, n + 1
    require(4 <= base <= 7, f"StyleGAN resolution must be 4..7 times a power of two (16, 28, 32), got {resolution}")
    return base, n


def _num_upsamples(resolution: int) -> int:
    return synthesis_base(resolution)[1]


def num_styles(resolution: int) -> int:
    """Number of per-layer styles of the synthesis network: ``2 log2(resolution / base) + 2`` (base 4..7)."""
    return 2 * _num_upsamples(resolution) + 2


class SynthesisNetwork(nn.Module):
    """StyleGAN2-style synthesis network (Karras et al. 2020, Fig. 2): learned constant (4x4, or 7x7 for
    28x28 images, :func:`synthesis_base`), per resolution a
    nearest x2 upsampling and two modulated/demodulated 3x3 convolutions with noise inputs and
    LeakyReLU(0.2), and a modulated 1x1 toRGB without demodulation. Input: per-layer styles
    ``ws [B, num_styles(resolution), w_dim]``."""

    resolution: int = 16
    out_channels: int = 3
    features: int = 64

    @nn.compact
    def __call__(self, ws: jax.Array) -> jax.Array:
        require(ws.ndim == 3 and ws.shape[1] == num_styles(self.resolution),
                f"ws must be [B, {num_styles(self.resolution)}, w_dim], got {tuple(ws.shape)}")
        base, _ = synthesis_base(self.resolution)
        const = self.param("const", flat_normal, (base, base, self.features))
        h = jnp.broadcast_to(const, (ws.shape[0], base, base, self.features))

        def styled(h_: jax.Array, idx: int) -> jax.Array:
            h_ = ModulatedConv(self.features, name=f"conv_{idx}")(h_, ws[:, idx])
            return nn.leaky_relu(NoiseInput(name=f"noise_{idx}")(h_), 0.2)

        h = styled(h, 0)
        for i in range(_num_upsamples(self.resolution)):
            h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)  # nearest-neighbour x2 upsampling
            h = styled(styled(h, 2 * i + 1), 2 * i + 2)
        rgb = ModulatedConv(self.out_channels, kernel_size=1, demodulate=False, name="to_rgb")
        return rgb(h, ws[:, -1])


def mix_styles(w: jax.Array, w_mix: jax.Array, cutoff: jax.Array, num_layers: int) -> jax.Array:
    """Style mixing regularisation (Karras et al. 2019, Sec. 3.1): per-layer styles ``[B, L, D]`` with layer
    ``i`` taking ``w`` when ``i < cutoff`` and ``w_mix`` otherwise (``cutoff`` scalar or ``[B]`` array)."""
    cutoff = jnp.broadcast_to(jnp.asarray(cutoff), (w.shape[0],))
    take_first = jnp.arange(num_layers)[None, :] < cutoff[:, None]
    return jnp.where(take_first[..., None], w[:, None], w_mix[:, None])


def truncate(w: jax.Array, w_avg: jax.Array, psi: float | jax.Array) -> jax.Array:
    """Truncation trick in W (Karras et al. 2019, Sec. 2 and App. B): ``w' = w_avg + psi (w - w_avg)``;
    ``psi = 1`` leaves ``w`` unchanged, ``psi = 0`` gives the average style."""
    return w_avg + psi * (w - w_avg)


class StyleGANGenerator(nn.Module):
    """A small StyleGAN2-style generator (Karras et al. 2019; 2020): :class:`MappingNetwork` ``z -> w`` and
    :class:`SynthesisNetwork` (params under ``"mapping"`` and ``"synthesis"``).

    Style mixing: with ``z_mix`` and ``mixing_cutoff`` (an int array, scalar or ``[B]``) the layers before the
    cutoff use ``w(z)`` and the rest ``w(z_mix)`` (:func:`mix_styles`); the cutoff is an array, so changing it
    does not recompile. Truncation: with ``w_avg`` ``[w_dim]`` every ``w`` becomes
    ``w_avg + psi (w - w_avg)`` (:func:`truncate`) before mixing."""

    resolution: int = 16
    out_channels: int = 3
    features: int = 64
    w_dim: int = 64
    mapping_layers: int = 4

    @nn.compact
    def __call__(self, z: jax.Array, z_mix: jax.Array | None = None,
                 mixing_cutoff: jax.Array | None = None, psi: float | jax.Array = 1.0,
                 w_avg: jax.Array | None = None) -> jax.Array:
        mapping = MappingNetwork(self.w_dim, self.mapping_layers, name="mapping")
        num_layers = num_styles(self.resolution)

        def to_w(latent: jax.Array) -> jax.Array:
            w = mapping(latent)
            return w if w_avg is None else truncate(w, w_avg, psi)

        w = to_w(z)
        if z_mix is None:
            ws = jnp.broadcast_to(w[:, None], (z.shape[0], num_layers, self.w_dim))
        else:
            require(z_mix.shape == z.shape,
                    f"z_mix shape {tuple(z_mix.shape)} must equal z shape {tuple(z.shape)}")
            require(mixing_cutoff is not None, "style mixing needs mixing_cutoff (a layer index) with z_mix")
            ws = mix_styles(w, to_w(z_mix), mixing_cutoff, num_layers)
        synthesis = SynthesisNetwork(self.resolution, self.out_channels, self.features, name="synthesis")
        return synthesis(ws)
