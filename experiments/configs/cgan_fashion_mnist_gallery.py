"""The gallery's class-conditional GAN on Fashion-MNIST (issue 17): ``dcgan_fashion_mnist.py`` with the
projection discriminator (Miyato & Koyama 2018), trained longer, with an EMA of the generator's weights
(decay 0.999; Karras et al. 2018's generator averaging), which `gm-jax sample` uses.

    nice -n 15 gm-jax train experiments/configs/cgan_fashion_mnist_gallery.py --workdir runs/cgan_gallery
    gm-jax eval --workdir runs/cgan_gallery --metrics fid --num 10000
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcgan_fashion_mnist.py"))
    config.model.conditional = True
    config.optim.ema_decay = 0.999
    config.train.num_steps = 5000
    config.train.checkpoint_every = 500
    config.train.sample_every = 1000
    return config
