"""Mixture of Bernoullis fitted by EM to statically binarized MNIST (the Salakhutdinov & Hinton 2009
baseline: 500 components, 137.64 nats). Each step is one EM iteration on a batch; batch = the whole
training set makes it exact batch EM.

    gm-jax train experiments/configs/bernoulli_mixture_mnist.py --workdir runs/bmm_mnist
"""

from gm_jax.classical.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "mnist"
    config.data.scale = "zero_one"
    config.data.binarize = "static"
    config.data.batch_size = 60000
    config.model = model_defaults()
    config.model.family = "bernoulli_mixture"
    config.model.num_components = 500
    config.train.num_steps = 40
    config.train.log_every = 1
    config.train.checkpoint_every = 10
    config.train.eval_every = 10         # test NLL (whole test split) every 10 EM iterations
    config.train.eval_batches = 0
    config.train.eval_batch_size = 10000
    return config
