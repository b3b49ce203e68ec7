"""Gaussian mixture (full covariances) fitted by EM to two moons: each train step is one EM iteration on
the batch, so a large batch makes it (nearly) batch EM.

    gm-jax train experiments/configs/gmm_two_moons.py --workdir runs/gmm_moons
"""

from gm_jax.classical.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "two_moons"
    config.data.batch_size = 4096
    config.model = model_defaults()
    config.model.family = "gmm"
    config.model.num_components = 8
    config.model.covariance_type = "full"
    config.train.num_steps = 100
    config.train.log_every = 10
    config.train.checkpoint_every = 50
    config.train.num_samples = 2000
    return config
