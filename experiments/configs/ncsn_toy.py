"""Score model on 2-D toy data (NCSN, Song & Ermon 2019): VE noise levels, denoising score matching with
σ² weighting, sampled by annealed Langevin dynamics (or `--sampler pc` / `euler` / `heun`).

    gm-jax train experiments/configs/ncsn_toy.py --workdir runs/ncsn
    gm-jax sample --workdir runs/ncsn --num 2000 --sampler annealed_langevin --steps 100
"""

from gm_jax.diffusion.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "checkerboard"
    config.data.batch_size = 256
    config.model = model_defaults()
    config.model.process = "ve"
    config.model.ve_sigma_max = 5.0   # ≈ the largest distance between checkerboard points
    config.model.parametrization = "score"
    config.model.network = "mlp"
    config.model.class_conditional = False
    config.model.sampler = "annealed_langevin"
    config.model.grid = "uniform"
    config.model.sample_steps = 100
    config.model.langevin_steps = 5
    config.model.langevin_step_lr = 2e-5
    config.optim.learning_rate = 1e-3
    config.train.num_steps = 5000
    config.train.log_every = 100
    config.train.checkpoint_every = 2000
    config.train.num_samples = 2000
    return config
