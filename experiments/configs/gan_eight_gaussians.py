"""WGAN-GP (Gulrajani et al. 2017) with MLPs on the ring of eight Gaussians — the mode-collapse test bed.

    gm-jax train experiments/configs/gan_eight_gaussians.py --workdir runs/gan_8g
    # other losses: --config.model.loss=non_saturating --config.model.gp_weight=0 --config.model.n_critic=1
"""

from gm_jax.gan.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "eight_gaussians"
    config.data.batch_size = 128
    config.model = model_defaults()
    config.model.architecture = "mlp"
    config.model.hidden = 128
    config.model.latent_dim = 8
    config.model.loss = "wasserstein"
    config.model.gp_weight = 1.0
    config.model.n_critic = 5
    config.optim.learning_rate = 1e-3
    config.optim.b1 = 0.5
    config.optim.b2 = 0.9
    config.train.num_steps = 3000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.sample_every = 1000
    config.train.num_samples = 2000
    return config
