"""Autoencoders (vanilla, denoising, sparse) and variational autoencoders: networks, losses, sampling,
anomaly scores, and the family behind the common step protocol."""

from gm_jax.autoencoders.family import SAMPLE_OPTIONS, build_model, make_family, model_defaults
from gm_jax.autoencoders.model import VAE, Autoencoder

__all__ = ["SAMPLE_OPTIONS", "VAE", "Autoencoder", "build_model", "make_family", "model_defaults"]
