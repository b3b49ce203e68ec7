"""Gated PixelCNN without blind spot (van den Oord et al. 2016b, sec. 2.1-2.3): re-exported from
:mod:`gm_jax.nn.pixelcnn`, shared with the VQ-VAE code prior."""

from gm_jax.nn.pixelcnn import GatedPixelCNN, gated_activation

__all__ = ["GatedPixelCNN", "gated_activation"]
