"""GAN networks as linen modules (used through ``init`` / ``apply``).

Images are ``[B, H, W, C]`` in ``[-1, 1]``; generators end in ``tanh``. Discriminators return logits
(``[B]``, or ``[B, h, w, 1]`` for the PatchGAN). Normalisation layers keep no running statistics:
``"batch"`` normalises with the statistics of the batch being processed (at training and at sampling time,
as in the DCGAN reference code), so no mutable collection is needed; ``"instance"`` and ``"layer"`` are
per example (use them, or ``"none"``, in a critic trained with a gradient penalty).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice, require
from gm_jax.gan.penalties import SpectralNorm

NORMALIZATIONS = ("batch", "instance", "layer", "none")
DISCRIMINATOR_NORMALIZATIONS = NORMALIZATIONS + ("spectral",)


class BatchStatNorm(nn.Module):
    """Batch normalisation (Ioffe & Szegedy 2015, Alg. 1) with the current batch's statistics over all axes
    but the last, and a learned per-channel scale and shift; no running averages are kept."""

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.var(x, axis=axes, keepdims=True)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


def normalize(kind: str, x: jax.Array, name: str | None = None) -> jax.Array:
    """Apply the normalisation ``kind`` (one of :data:`NORMALIZATIONS`) inside a compact module."""
    check_choice("normalization", kind, NORMALIZATIONS)
    if kind == "batch":
        return BatchStatNorm(name=name)(x)
    if kind == "instance":
        return nn.InstanceNorm(name=name)(x)
    if kind == "layer":
        return nn.LayerNorm(reduction_axes=tuple(range(1, x.ndim)), feature_axes=-1, name=name)(x)
    return x


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
    """Sub-pixel convolution rearrangement (Shi et al. 2016, eq. 4): ``[B, H, W, C r^2] -> [B, H r, W r, C]``
    with output pixel ``(h r + i, w r + j, c)`` read from input channel ``c r^2 + i r + j``."""
    b, h, w, c = x.shape
    require(c % (factor * factor) == 0,
            f"pixel_shuffle needs channels divisible by factor^2={factor * factor}, got {c}")
    out_c = c // (factor * factor)
    x = x.reshape(b, h, w, out_c, factor, factor)
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * factor, w * factor, out_c)


def num_halvings(size: int) -> tuple[int, int]:
    """How many stride-2 steps take a DCGAN image side ``size`` down to its base side (4 to 7):
    28 -> (2, 7), 32 -> (3, 4), 64 -> (4, 4)."""
    base, n = size, 0
    while base % 2 == 0 and base > 7:
        base, n = base // 2, n + 1
    require(n >= 1 and 4 <= base <= 7, f"DCGAN image side must be 4..7 times a power of two (28, 32, 64), got {size}")
    return n, base


def _check_labels(label: jax.Array | None, batch: int, num_classes: int, who: str) -> jax.Array:
    require(label is not None, f"{who} is class-conditional (num_classes={num_classes}); pass label [B]")
    require(label.shape == (batch,),
            f"{who}: label shape {tuple(label.shape)} does not match the batch; expected ({batch},)")
    return label


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016, Fig. 1): project z, then stride-2 transposed convolutions that
    halve the channels, normalisation + ReLU, ``tanh`` output. With ``num_classes > 0`` it is
    class-conditional: a learned label embedding is concatenated to z (Mirza & Osindero 2014)."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    features: int = 64
    num_classes: int = 0
    embed_dim: int = 32
    normalization: str = "batch"

    @nn.compact
    def __call__(self, z: jax.Array, label: jax.Array | None = None) -> jax.Array:
        height, width, channels = self.image_shape
        require(height == width, f"DCGAN needs square images, got image_shape={self.image_shape}")
        n, base = num_halvings(height)
        if self.num_classes > 0:
            label = _check_labels(label, z.shape[0], self.num_classes, "DCGANGenerator")
            z = jnp.concatenate([z, nn.Embed(self.num_classes, self.embed_dim)(label)], axis=-1)
        width0 = self.features * 2 ** (n - 1)
        h = nn.Dense(base * base * width0)(z)
        h = nn.relu(normalize(self.normalization, h))
        h = h.reshape(z.shape[0], base, base, width0)
        for i in range(n - 1):
            h = nn.ConvTranspose(width0 // 2 ** (i + 1), (4, 4), strides=(2, 2))(h)
            h = nn.relu(normalize(self.normalization, h))
        return jnp.tanh(nn.ConvTranspose(channels, (4, 4), strides=(2, 2))(h))


def minibatch_stddev(h: jax.Array, epsilon: float = 1e-8) -> jax.Array:
    """Minibatch standard deviation layer (Karras et al. 2018, Sec. 3): the standard deviation over the batch
    of every feature, averaged to one scalar, appended to ``h [B, H, W, C]`` as a constant channel
    ``[B, H, W, C + 1]``; a batch of near-identical samples gets a small value, so the discriminator can
    penalise missing variation (a remedy for mode collapse)."""
    std = jnp.sqrt(jnp.var(h, axis=0) + epsilon)
    channel = jnp.broadcast_to(jnp.mean(std), h.shape[:-1] + (1,))
    return jnp.concatenate([h, channel.astype(h.dtype)], axis=-1)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator (Radford et al. 2016): stride-2 convolutions doubling the channels, LeakyReLU(0.2),
    no normalisation on the first layer, a linear logit ``psi(phi(x))``. With ``num_classes > 0`` it is a
    projection discriminator (Miyato & Koyama 2018, eq. 3): ``f(x, y) = psi(phi(x)) + <V e_y, phi(x)>``.

    ``normalization='spectral'`` (Miyato et al. 2018) wraps every convolution and the logit layer in
    :class:`gm_jax.gan.penalties.SpectralNorm` instead of normalising activations; its power-iteration
    vectors live in the mutable collection ``"spectral"`` and are refreshed by calls with
    ``update_stats=True`` (apply with ``mutable=["spectral"]``). ``minibatch_std`` appends the
    :func:`minibatch_stddev` feature map before the logit layer (the batch's examples then interact)."""

    features: int = 64
    num_classes: int = 0
    normalization: str = "batch"
    spectral_iters: int = 1
    minibatch_std: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, label: jax.Array | None = None, update_stats: bool = False) -> jax.Array:
        require(x.ndim == 4, f"DCGANDiscriminator expects images [B, H, W, C], got shape {tuple(x.shape)}")
        check_choice("discriminator normalization", self.normalization, DISCRIMINATOR_NORMALIZATIONS)
        spectral = self.normalization == "spectral"

        def layer(module: nn.Module, h: jax.Array) -> jax.Array:
            if not spectral:
                return module(h)
            return SpectralNorm(module, num_iters=self.spectral_iters)(h, update_stats=update_stats)

        n, _ = num_halvings(x.shape[1])
        h = nn.leaky_relu(layer(nn.Conv(self.features, (4, 4), strides=(2, 2)), x), 0.2)
        for i in range(1, n):
            h = layer(nn.Conv(self.features * 2 ** i, (4, 4), strides=(2, 2)), h)
            h = nn.leaky_relu(h if spectral else normalize(self.normalization, h), 0.2)
        if self.minibatch_std:
            h = minibatch_stddev(h)
        phi = h.reshape(x.shape[0], -1)
        logits = layer(nn.Dense(1), phi)[:, 0]
        if self.num_classes > 0:
            label = _check_labels(label, x.shape[0], self.num_classes, "DCGANDiscriminator")
            embed = nn.Embed(self.num_classes, phi.shape[-1], embedding_init=nn.initializers.normal(0.02))
            logits = logits + jnp.sum(embed(label) * phi, axis=-1)
        return logits


class MLPGenerator(nn.Module):
    """Small MLP generator for 2-D toy data: ``depth`` ReLU layers of width ``hidden``, linear output."""

    out_dim: int = 2
    hidden: int = 128
    depth: int = 3

    @nn.compact
    def __call__(self, z: jax.Array, label: jax.Array | None = None) -> jax.Array:
        h = z
        for _ in range(self.depth):
            h = nn.relu(nn.Dense(self.hidden)(h))
        return nn.Dense(self.out_dim)(h)


class MLPDiscriminator(nn.Module):
    """Small MLP discriminator for 2-D toy data: ``depth`` LeakyReLU(0.2) layers, one logit per example."""

    hidden: int = 128
    depth: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for _ in range(self.depth):
            h = nn.leaky_relu(nn.Dense(self.hidden)(h), 0.2)
        return nn.Dense(1)(h)[:, 0]


def concat_condition(condition: jax.Array, image: jax.Array) -> jax.Array:
    """Channel-wise concatenation of a conditioning image and an image (the cGAN input of Isola et al. 2017);
    ConfigError when their batch or spatial shapes differ."""
    require(condition.ndim == 4 and image.ndim == 4 and condition.shape[:3] == image.shape[:3],
            f"condition {tuple(condition.shape)} and image {tuple(image.shape)} must share [B, H, W]; "
            "resize one of them")
    return jnp.concatenate([condition, image], axis=-1)


class UNetGenerator(nn.Module):
    """Pix2Pix U-Net generator (Isola et al. 2017, Sec. 3.2.1 and App. 6.1.1): ``depth`` stride-2 4x4
    convolutions (LeakyReLU 0.2) down, transposed convolutions (ReLU) up, skip connections concatenating
    mirrored layers, ``tanh`` output. Channels ``min(features * 2^i, 8 features)``. The paper's dropout
    noise is left out (the model is deterministic)."""

    out_channels: int = 3
    features: int = 64
    depth: int = 4
    normalization: str = "instance"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = 2 ** self.depth
        require(x.shape[1] % scale == 0 and x.shape[2] % scale == 0,
                f"UNetGenerator with depth={self.depth} needs H and W divisible by {scale}, got {x.shape[1:3]}")
        width = [min(self.features * 2 ** i, 8 * self.features) for i in range(self.depth)]
        skips, h = [], x
        for i in range(self.depth):
            h = nn.Conv(width[i], (4, 4), strides=(2, 2))(h)
            if i > 0:
                h = normalize(self.normalization, h)
            h = nn.leaky_relu(h, 0.2)
            skips.append(h)
        for i in reversed(range(self.depth - 1)):
            h = nn.ConvTranspose(width[i], (4, 4), strides=(2, 2))(h)
            h = nn.relu(normalize(self.normalization, h))
            h = jnp.concatenate([h, skips[i]], axis=-1)
        return jnp.tanh(nn.ConvTranspose(self.out_channels, (4, 4), strides=(2, 2))(h))


class PatchGANDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017, Sec. 3.2.2): a fully convolutional classifier of the pair
    ``(condition, image)`` giving one logit per overlapping patch, ``[B, H / 2^num_layers, W / 2^num_layers,
    1]``. Stride-2 4x4 convolutions, LeakyReLU(0.2), no normalisation on the first layer."""

    features: int = 64
    num_layers: int = 3
    normalization: str = "instance"

    @nn.compact
    def __call__(self, condition: jax.Array, image: jax.Array) -> jax.Array:
        h = nn.leaky_relu(nn.Conv(self.features, (4, 4), strides=(2, 2))(concat_condition(condition, image)),
                          0.2)
        for i in range(1, self.num_layers):
            h = nn.Conv(self.features * min(2 ** i, 8), (4, 4), strides=(2, 2))(h)
            h = nn.leaky_relu(normalize(self.normalization, h), 0.2)
        h = nn.Conv(self.features * min(2 ** self.num_layers, 8), (4, 4))(h)
        h = nn.leaky_relu(normalize(self.normalization, h), 0.2)
        return nn.Conv(1, (4, 4))(h)


def _reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class CycleGANGenerator(nn.Module):
    """CycleGAN ResNet generator (Zhu et al. 2017, App. 7.2; Johnson et al. 2016): reflection-padded 7x7
    convolution, ``num_downsamples`` stride-2 convolutions, ``num_blocks`` residual blocks, transposed
    convolutions back up, 7x7 convolution with ``tanh``; instance normalisation."""

    out_channels: int = 3
    features: int = 64
    num_downsamples: int = 2
    num_blocks: int = 6
    normalization: str = "instance"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = 2 ** self.num_downsamples
        require(x.shape[1] % scale == 0 and x.shape[2] % scale == 0,
                f"CycleGANGenerator needs H and W divisible by {scale}, got {x.shape[1:3]}")
        h = nn.Conv(self.features, (7, 7), padding="VALID")(_reflect_pad(x, 3))
        h = nn.relu(normalize(self.normalization, h))
        for i in range(self.num_downsamples):
            h = nn.Conv(self.features * 2 ** (i + 1), (3, 3), strides=(2, 2))(h)
            h = nn.relu(normalize(self.normalization, h))
        width = h.shape[-1]
        for _ in range(self.num_blocks):
            r = nn.Conv(width, (3, 3), padding="VALID")(_reflect_pad(h, 1))
            r = nn.relu(normalize(self.normalization, r))
            r = nn.Conv(width, (3, 3), padding="VALID")(_reflect_pad(r, 1))
            h = h + normalize(self.normalization, r)
        for i in reversed(range(self.num_downsamples)):
            h = nn.ConvTranspose(self.features * 2 ** i, (3, 3), strides=(2, 2))(h)
            h = nn.relu(normalize(self.normalization, h))
        return jnp.tanh(nn.Conv(self.out_channels, (7, 7), padding="VALID")(_reflect_pad(h, 3)))


class SRGANGenerator(nn.Module):
    """SRGAN generator (Ledig et al. 2017, Fig. 4): 9x9 convolution + PReLU, ``num_blocks`` residual blocks,
    a long skip, then ``log2(scale)`` sub-pixel upsampling blocks (convolution to 4C, pixel shuffle x2,
    PReLU) and a 9x9 output convolution with ``tanh``. Batch normalisation in the residual blocks is left
    out (as in ESRGAN, Wang et al. 2018), so the network is per-example. ``scale`` is 2 or 4."""

    scale: int = 4
    out_channels: int = 3
    features: int = 64
    num_blocks: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        require(self.scale in (2, 4), f"SRGANGenerator scale must be 2 or 4, got {self.scale}")
        h = nn.PReLU()(nn.Conv(self.features, (9, 9))(x))
        skip = h
        for _ in range(self.num_blocks):
            r = nn.PReLU()(nn.Conv(self.features, (3, 3))(h))
            h = h + nn.Conv(self.features, (3, 3))(r)
        h = skip + nn.Conv(self.features, (3, 3))(h)
        for _ in range(self.scale // 2):
            h = nn.PReLU()(pixel_shuffle(nn.Conv(4 * self.features, (3, 3))(h), 2))
        return jnp.tanh(nn.Conv(self.out_channels, (9, 9))(h))


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


GENERATORS: dict[str, Callable[..., nn.Module]] = {"dcgan": DCGANGenerator, "mlp": MLPGenerator}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {"dcgan": DCGANDiscriminator, "mlp": MLPDiscriminator}


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(p.size for p in jax.tree.leaves(params)))

