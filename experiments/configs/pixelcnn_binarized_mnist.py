"""Gated PixelCNN (van den Oord et al. 2016b) on statically binarized MNIST: exact NLL in nats, to set next
to 81.30 (van den Oord et al. 2016a). `--config.data.name=fashion_mnist --config.data.binarize=none
--config.model.likelihood=logistic_mixture` gives bits/dim on 8-bit Fashion-MNIST.

    gm-jax train experiments/configs/pixelcnn_binarized_mnist.py --workdir runs/pixelcnn_mnist
"""

from gm_jax.autoregressive.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "mnist"
    config.data.scale = "zero_one"
    config.data.binarize = "static"
    config.data.batch_size = 64
    config.model = model_defaults()
    config.model.hidden = 64
    config.model.num_layers = 8
    config.model.likelihood = "categorical"
    config.optim.learning_rate = 1e-3
    config.train.num_steps = 10000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.eval_batches = 8
    config.train.num_samples = 16
    return config
