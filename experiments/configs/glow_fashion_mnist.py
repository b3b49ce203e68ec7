"""A small multi-scale Glow (Kingma & Dhariwal 2018) on uniformly dequantized Fashion-MNIST: two scales of
four (ActNorm, LU 1x1 conv, affine coupling) steps; bits/dim is the bound on the discrete 8-bit NLL.
`--config.model.kind=realnvp` gives the multi-scale RealNVP (Dinh et al. 2017) instead.

    gm-jax train experiments/configs/glow_fashion_mnist.py --workdir runs/glow_fmnist
    gm-jax sample --workdir runs/glow_fmnist --num 64 --temperature 0.7
"""

from gm_jax.flows.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.dequantize = True
    config.data.batch_size = 64
    config.model = model_defaults()
    config.model.kind = "glow"
    config.model.num_scales = 2
    config.model.steps_per_scale = 4
    config.model.image_hidden = 64
    config.model.temperature = 0.7
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 100
    config.optim.grad_clip = 50.0
    config.train.num_steps = 20000
    config.train.log_every = 100
    config.train.checkpoint_every = 500
    config.train.eval_batches = 0
    config.train.eval_batch_size = 500
    return config
