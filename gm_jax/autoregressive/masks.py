"""Masked convolutions of PixelCNN (van den Oord et al. 2016a, sec. 3.4; 2016b, sec. 2.2): re-exported from
:mod:`gm_jax.nn.pixelcnn`, where they live so that the VQ-VAE code prior can use them without importing this
family."""

from gm_jax.nn.pixelcnn import MaskedConv, autoregressive_mask, channel_groups, masked_conv2d, shift_down

__all__ = ["MaskedConv", "autoregressive_mask", "channel_groups", "masked_conv2d", "shift_down"]
