"""SR3 super-resolution (Saharia et al. 2022) at CPU scale: the gallery DDPM's recipe
(``ddpm_fashion_mnist_gallery.py``: tiny U-Net, batch 64, EDM preconditioning, EMA 0.995) made conditional on
the ×4 average-pooled image (``--config.model.sr_scale=2`` for ×2) and unconditional on the label, 1500 steps.

    gm-jax train experiments/configs/sr3_fashion_mnist_cpu.py --workdir runs/sr3_x4
    gm-jax train experiments/configs/sr3_fashion_mnist_cpu.py --workdir runs/sr3_x2 --config.model.sr_scale=2
    gm-jax restore --workdir runs/sr3_x4 --task superres --scale 4 --method sr3 --input IMG.png

Measured in docs/results.md ("Restoration tables on the gallery DDPM").
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    """The gallery DDPM's config, conditioned on the low-resolution measurement instead of the label."""
    config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "ddpm_fashion_mnist_gallery.py"))
    config.model.condition = "superres"
    config.model.sr_scale = 4
    config.model.sr_sigma_y = 0.0
    config.model.class_conditional = False
    config.train.num_steps = 1500
    config.train.sample_every = 0
    return config
