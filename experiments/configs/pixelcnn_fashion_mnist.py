"""Gated PixelCNN (van den Oord et al. 2016b) with the discretized logistic mixture likelihood (Salimans et al.
2017, 5 components) on 8-bit Fashion-MNIST: exact test bits/dim, comparable with the flows' dequantized bound.

    gm-jax train experiments/configs/pixelcnn_fashion_mnist.py --workdir runs/pixelcnn_fmnist
"""

from gm_jax.autoregressive.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 64
    config.model = model_defaults()
    config.model.hidden = 64
    config.model.num_layers = 8
    config.model.likelihood = "logistic_mixture"
    config.model.num_mixtures = 5
    config.optim.learning_rate = 1e-3
    config.train.num_steps = 10000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.eval_batches = 0
    config.train.eval_batch_size = 500
    config.train.num_samples = 16
    return config
