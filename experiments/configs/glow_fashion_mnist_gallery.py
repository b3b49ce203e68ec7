"""The gallery's Glow on Fashion-MNIST (issue 17): ``glow_fashion_mnist.py`` (2 scales x 4 steps, hidden 64,
uniform dequantization) trained for 4000 steps; bits/dim is the bound on the discrete 8-bit NLL, samples at
temperature 0.7.

    nice -n 15 gm-jax train experiments/configs/glow_fashion_mnist_gallery.py --workdir runs/glow_gallery
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "glow_fashion_mnist.py"))
    config.train.num_steps = 4000
    config.train.eval_batches = 4
    config.train.sample_every = 1000
    return config
