"""The gallery's VQ-VAE, stage 1 (issue 17): ``vqvae_fashion_mnist.py`` at learning rate 1e-3 for 3000 steps.
Stage 2 (``vqvae_prior_fashion_mnist_gallery.py``) fits the PixelCNN prior over its 7x7 code grid; the
exported prior carries this stage inside its weights.

    nice -n 15 gm-jax train experiments/configs/vqvae_fashion_mnist_gallery.py --workdir runs/vqvae_gallery
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "vqvae_fashion_mnist.py"))
    config.optim.learning_rate = 1e-3
    config.train.num_steps = 3000
    config.train.checkpoint_every = 500
    return config
