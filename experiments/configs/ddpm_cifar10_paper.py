"""The DDPM CIFAR-10 model of Ho et al. 2020 (App. B): U-Net ch 128, multipliers (1, 2, 2, 2), 2 residual
blocks, attention at 16x16, dropout 0.1 — 35.7M parameters; linear β from 1e-4 to 0.02, T = 1000; Adam 2e-4,
batch 128, 5000 warm-up steps, grad clip 1, EMA 0.9999, 800k steps. Meant for an accelerator; on CPU
tests/diffusion/test_paper_config.py dry-runs it (shapes and parameter count by jax.eval_shape).

    gm-jax train experiments/configs/ddpm_cifar10_paper.py --workdir runs/ddpm_cifar10 --config.data.source_dir=DIR
"""

from gm_jax.diffusion.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "cifar10"
    config.data.batch_size = 128
    config.model = model_defaults()
    config.model.unet = "ddpm_cifar10"
    config.model.class_conditional = False
    config.model.beta_schedule = "linear"
    config.model.num_timesteps = 1000
    config.optim.learning_rate = 2e-4
    config.optim.warmup_steps = 5000
    config.optim.grad_clip = 1.0
    config.optim.ema_decay = 0.9999
    config.train.num_steps = 800000
    config.train.checkpoint_every = 10000
    config.train.sample_every = 50000
    return config
