"""Linen building blocks: MLPs, conv stacks, the diffusion U-Net, attention and embeddings."""

from gm_jax.nn.attention import SelfAttention2D, group_count
from gm_jax.nn.conv import ConvDecoder, ConvEncoder, downsampled_sizes
from gm_jax.nn.embeddings import GaussianFourierEmbedding, sinusoidal_embedding
from gm_jax.nn.mlp import MLP
from gm_jax.nn.unet import UNET_CONFIGS, ResidualBlock, UNet, unet_config

__all__ = [
    "MLP", "UNET_CONFIGS", "ConvDecoder", "ConvEncoder", "GaussianFourierEmbedding", "ResidualBlock",
    "SelfAttention2D", "UNet", "downsampled_sizes", "group_count", "sinusoidal_embedding", "unet_config",
]
