"""Conditional flow matching (Lipman et al. 2023) with the linear (OT) path and mini-batch OT coupling
(Tong et al. 2023) on two moons; sampled with Heun (or `--sampler dopri5`, adaptive).

    gm-jax train experiments/configs/flow_matching_moons.py --workdir runs/cfm_moons
    gm-jax sample --workdir runs/cfm_moons --num 2000 --sampler euler --steps 10
"""

from gm_jax.flow_matching.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "two_moons"
    config.data.batch_size = 256
    config.model = model_defaults()
    config.model.coupling = "ot"
    config.optim.learning_rate = 1e-3
    config.train.num_steps = 5000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.num_samples = 2000
    return config
