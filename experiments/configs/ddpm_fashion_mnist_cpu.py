"""The class-conditional Fashion-MNIST DDPM of ``ddpm_fashion_mnist.py`` sized for a 2-core CPU: the tiny
U-Net (16 channels, no attention), batch 64, a higher learning rate and a faster EMA so that about an hour
of CPU gives recognizable samples. This is the model the sampler grids and timings in the README come from.

    gm-jax train experiments/configs/ddpm_fashion_mnist_cpu.py --workdir runs/ddpm_fmnist_cpu
    gm-jax sample --workdir runs/ddpm_fmnist_cpu --sampler dpm_solver_2m --steps 20 --guidance 2.0
"""

import os

from gm_jax.train.config import load_config_file


def full_config():
    return load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddpm_fashion_mnist.py"))


def get_config():
    config = full_config()
    config.model.unet = "tiny"
    config.data.batch_size = 64
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 200
    config.optim.ema_decay = 0.995
    config.train.num_steps = 6000
    config.train.log_every = 50
    config.train.checkpoint_every = 250
    config.train.sample_every = 1000
    config.train.eval_every = 0
    return config
