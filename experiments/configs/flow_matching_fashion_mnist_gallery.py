"""The gallery's flow-matching model on Fashion-MNIST (issue 17): ``flow_matching_fashion_mnist.py`` (linear
path, tiny U-Net, independent coupling) trained for 3000 steps with gradient clipping at 1 and EMA 0.995, the
gallery DDPM's optimiser; sampled with Heun, 20 steps (40 NFE); bits/dim by Dormand-Prince + Hutchinson.

    nice -n 15 gm-jax train experiments/configs/flow_matching_fashion_mnist_gallery.py --workdir runs/fm_gallery
    gm-jax sample --workdir runs/fm_gallery --num 64
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    here = os.path.dirname(os.path.abspath(__file__))
    config = load_config_file(os.path.join(here, "flow_matching_fashion_mnist.py"))
    config.optim.grad_clip = 1.0
    config.train.num_steps = 3000
    config.train.checkpoint_every = 500
    config.train.sample_every = 1000
    config.train.eval_batches = 1
    return config
