"""The main job: a convolutional VAE with a Gaussian decoder on the embedded Fashion-MNIST subset
(5000 training images shipped in the package), a few minutes on 2 CPU cores.

    gm-jax train experiments/configs/vae.py --workdir runs/vae
"""

from gm_jax.autoencoders.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist_small"
    config.data.scale = "zero_one"
    config.data.batch_size = 64
    config.model = model_defaults()
    config.model.family = "vae"
    config.model.arch = "conv"
    config.model.channels = (16, 32)
    config.model.latent_dim = 16
    config.model.decoder = "gaussian"
    config.optim.learning_rate = 1e-3
    config.train.num_steps = 1500
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    config.train.sample_every = 500
    config.train.eval_batches = 0
    return config
