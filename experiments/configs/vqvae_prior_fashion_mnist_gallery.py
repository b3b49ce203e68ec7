"""The gallery's VQ-VAE, stage 2 (issue 17): ``vqvae_prior_fashion_mnist.py``'s gated PixelCNN prior over the
code grid of ``vqvae_fashion_mnist_gallery.py``'s run, 3000 steps. Exported as ``vqvae_fashion_mnist``
(the frozen stage 1 travels inside the prior's parameters).

    nice -n 15 gm-jax train experiments/configs/vqvae_prior_fashion_mnist_gallery.py \
        --workdir runs/vqvae_prior_gallery --config.model.prior_of=runs/vqvae_gallery
    gm-jax sample --workdir runs/vqvae_prior_gallery --num 64
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    here = os.path.dirname(os.path.abspath(__file__))
    config = load_config_file(os.path.join(here, "vqvae_prior_fashion_mnist.py"))
    config.model.prior_of = "runs/vqvae_gallery"
    config.train.num_steps = 3000
    return config
