"""Bernoulli RBM trained by persistent contrastive divergence on dynamically binarized MNIST; its test NLL
comes from annealed importance sampling of log Z (Salakhutdinov & Murray 2008).

    gm-jax train experiments/configs/rbm_binarized_mnist.py --workdir runs/rbm_mnist
"""

from gm_jax.classical.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "mnist"
    config.data.scale = "zero_one"
    config.data.binarize = "dynamic"
    config.data.batch_size = 128
    config.model = model_defaults()
    config.model.family = "rbm"
    config.model.num_hidden = 500
    config.model.cd_steps = 1
    config.model.persistent = True
    config.model.num_chains = 128
    config.model.learning_rate = 0.01
    config.model.ais_chains = 100
    config.model.ais_betas = 10000
    config.train.num_steps = 20000
    config.train.log_every = 200
    config.train.checkpoint_every = 2000
    config.train.eval_batches = 2
    return config
