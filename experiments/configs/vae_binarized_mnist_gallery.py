"""The gallery's VAE on dynamically binarized MNIST (issue 17): ``vae_binarized_mnist.py`` (Burda et al. 2016's
784-200-200-50 MLP, Bernoulli decoder) trained for 150 000 steps (≈ 320 epochs at batch 128) with a cosine
learning-rate decay, 50 steps fused per compiled call.

    nice -n 15 gm-jax train experiments/configs/vae_binarized_mnist_gallery.py --workdir runs/vae_mnist_gallery
    python experiments/vae_nll.py --config experiments/configs/vae_binarized_mnist_gallery.py \
        --workdir runs/vae_mnist_gallery --k 1000
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "vae_binarized_mnist.py"))
    config.optim.schedule = "cosine"
    config.optim.decay_steps = 150_000
    config.train.num_steps = 150_000
    config.train.steps_per_call = 50
    config.train.log_every = 1000
    config.train.checkpoint_every = 10_000
    config.train.sample_every = 50_000
    return config
