"""VQ-VAE (van den Oord et al. 2017) with the EMA codebook (decay 0.99) on Fashion-MNIST: 28x28 -> a 7x7
grid of 64 codes; reconstructions, codebook usage and perplexity are logged.

    gm-jax train experiments/configs/vqvae_fashion_mnist.py --workdir runs/vqvae
"""

from gm_jax.train.config import base_config
from gm_jax.vq.family import model_defaults


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 64
    config.model = model_defaults()
    config.optim.learning_rate = 3e-4
    config.train.num_steps = 10000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    return config
