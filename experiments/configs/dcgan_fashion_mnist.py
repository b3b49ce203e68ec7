"""DCGAN (Radford et al. 2016: Adam 2e-4, beta1 0.5, batch norm in G) on Fashion-MNIST, offline from
Debian's files; `--config.model.conditional=true` gives the class-conditional GAN with a projection
discriminator (Miyato & Koyama 2018).

    gm-jax train experiments/configs/dcgan_fashion_mnist.py --workdir runs/dcgan
    gm-jax eval --workdir runs/dcgan --metrics fid,kid,is,prdc --num 1000
"""

from gm_jax.gan.family import model_defaults, optim_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 64
    config.model = model_defaults()
    config.model.architecture = "dcgan"
    config.model.features = 32
    config.model.latent_dim = 64
    config.model.loss = "non_saturating"
    config.optim.update(optim_defaults())
    config.train.num_steps = 10000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.sample_every = 1000
    return config
