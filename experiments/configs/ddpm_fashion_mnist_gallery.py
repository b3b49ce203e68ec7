"""The gallery's class-conditional Fashion-MNIST diffusion model (issues 17/18): ``ddpm_fashion_mnist_cpu.py``'s
tiny U-Net and batch, trained with EDM preconditioning instead of ε-prediction (Karras et al. 2022: σ-process,
c_skip/c_out/c_in/c_noise, log-normal training σ, λ(σ)-weighted x̂_0 loss). The network's target stays O(1)
at every noise level, so x̂_0 at low σ is no longer ε̂ amplified by 1/α (the textured noise of the old
ε-model's deterministic samples), and the sampling grid is Karras' ρ = 7 grid every sampler shares.
Classifier-free guidance w = 2 by default; EMA 0.995 for a run of a few thousand steps.

    nice -n 15 gm-jax train experiments/configs/ddpm_fashion_mnist_gallery.py --workdir runs/ddpm_gallery
    gm-jax sample --workdir runs/ddpm_gallery --sampler dpm_solver_2m --steps 20 --num 64
    python experiments/gallery_ddpm_measure.py --workdir runs/ddpm_gallery --out runs/gallery_measure --num 500

Trained for 4500 steps (2756 s CPU); shipped as the pretrained model ``ddpm_fashion_mnist`` (docs/results.md,
"Gallery DDPM").
"""

import os

from gm_jax.train.config import load_config_file


def full_config():
    return load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddpm_fashion_mnist_cpu.py"))


def get_config():
    config = full_config()
    config.model.process = "edm"
    config.model.parametrization = "edm"
    config.model.sampler = "dpm_solver_2m"
    config.model.sample_steps = 20
    config.model.guidance = 2.0
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 200
    config.optim.grad_clip = 1.0
    config.optim.ema_decay = 0.995
    config.train.num_steps = 4500
    config.train.checkpoint_every = 250
    config.train.sample_every = 500
    config.train.eval_every = 0
    return config
