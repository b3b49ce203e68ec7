"""Class-conditional DDPM (Ho et al. 2020: linear β, T = 1000, ε-prediction) on Fashion-MNIST with label
dropout 0.1 for classifier-free guidance (Ho & Salimans 2022); a ~1M-parameter U-Net.

    gm-jax train experiments/configs/ddpm_fashion_mnist.py --workdir runs/ddpm
    gm-jax sample --workdir runs/ddpm --sampler ddim --steps 50 --eta 0.0 --guidance 2.0 --label 7
    gm-jax sample --workdir runs/ddpm --sampler ddpm --steps 1000
"""

from gm_jax.diffusion.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 128
    config.model = model_defaults()
    config.model.unet = "small"
    config.model.class_conditional = True
    config.model.label_dropout = 0.1
    config.model.sampler = "ddim"
    config.model.sample_steps = 50
    config.optim.learning_rate = 2e-4
    config.optim.warmup_steps = 500
    config.optim.grad_clip = 1.0
    config.optim.ema_decay = 0.999
    config.train.num_steps = 20000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.sample_every = 2000
    config.train.eval_batches = 1
    config.model.eval_num_t = 16
    return config
