"""RealNVP (Dinh et al. 2017) with MLP couplings on two moons; `--config.data.name=fashion_mnist
--config.data.dequantize=true --config.model.kind=glow` trains a small multi-scale Glow on images.

    gm-jax train experiments/configs/realnvp_two_moons.py --workdir runs/realnvp_moons
"""

from gm_jax.flows.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "two_moons"
    config.data.batch_size = 256
    config.model = model_defaults()
    config.optim.learning_rate = 1e-3
    config.train.num_steps = 5000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.num_samples = 2000
    return config
