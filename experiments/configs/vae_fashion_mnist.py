"""Convolutional VAE (Gaussian decoder, dequantized) on the full Fashion-MNIST, prepared offline by our TFDS
builder from Debian's `dataset-fashion-mnist` (found automatically in /usr/share/datasets/fashion-mnist).

    gm-jax train experiments/configs/vae_fashion_mnist.py --workdir runs/vae_fashion_mnist
"""

from gm_jax.autoencoders.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.scale = "zero_one"
    config.data.batch_size = 128
    config.model = model_defaults()
    config.model.family = "vae"
    config.model.arch = "conv"
    config.model.channels = (32, 64)
    config.model.latent_dim = 32
    config.model.decoder = "gaussian"
    config.optim.learning_rate = 1e-3
    config.optim.ema_decay = 0.999
    config.train.num_steps = 10000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.sample_every = 2000
    config.train.eval_batches = 0
    return config
