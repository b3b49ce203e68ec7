"""VQ-VAE stage 2 (van den Oord et al. 2017, sec. 4.2): a gated PixelCNN prior over the 7x7 code grid of the
VQ-VAE trained by `vqvae_fashion_mnist.py`, so that `gm-jax sample` draws new images. `model.prior_of` names
the stage-1 work directory (its config.json and latest checkpoint are read; the VQ-VAE is kept frozen in this
run's parameters). `gm-jax eval` reports the prior's NLL and -ELBO bits/dim (discretized Gaussian decoder).

    gm-jax train experiments/configs/vqvae_fashion_mnist.py --workdir runs/vqvae
    gm-jax train experiments/configs/vqvae_prior_fashion_mnist.py --workdir runs/vqvae_prior \
        --config.model.prior_of=runs/vqvae
    gm-jax sample --workdir runs/vqvae_prior --num 64 --temperature 1.0
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    here = os.path.dirname(os.path.abspath(__file__))
    config = load_config_file(os.path.join(here, "vqvae_fashion_mnist.py"))  # same data as stage 1
    config.model.prior_of = "runs/vqvae"
    config.model.prior_hidden = 64
    config.model.prior_layers = 6
    config.model.prior_kernel_size = 3
    config.optim.learning_rate = 1e-3
    config.train.num_steps = 5000
    config.train.log_every = 100
    config.train.checkpoint_every = 500
    config.train.eval_batches = 0
    config.train.eval_batch_size = 500
    return config
