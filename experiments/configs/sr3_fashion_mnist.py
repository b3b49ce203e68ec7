"""SR3 super-resolution ×4 on Fashion-MNIST (Saharia et al. 2022): a DDPM (linear β, T = 1000, ε-prediction)
whose U-Net sees concat([x_t, A⁺y]) (2C input channels, C output), y = A x the 4×4 average pooling of the
training image (7×7 low-res, upsampled nearest-neighbour), computed from the batch inside the loss; no
label conditioning. Sampling draws x ~ p(x | y) with any registered sampler, the condition fixed.

    gm-jax train experiments/configs/sr3_fashion_mnist.py --workdir runs/sr3
    gm-jax restore --workdir runs/sr3 --task superres --scale 4 --method sr3 --input IMG.png --steps 50

CPU-sized variant (minutes, the embedded 64-image subset, a small MLP):

    gm-jax train experiments/configs/sr3_fashion_mnist.py --workdir runs/sr3_cpu \\
        --config.data.name=fashion_mnist_small --config.model.network=mlp --config.model.num_timesteps=100 \\
        --config.train.num_steps=500

Compare with the zero-shot methods on an unconditional run (e.g. experiments/configs/ddpm_fashion_mnist.py):
``gm-jax restore --workdir runs/ddpm --task superres --scale 4 --method ddrm --input IMG.png``. ``gm-jax sample``
on this run super-resolves the measurements of eval images.
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    """The Fashion-MNIST DDPM's config (same schedule, U-Net, optimizer and loop), made conditional on the
    ×4 measurement and unconditional on the label."""
    config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddpm_fashion_mnist.py"))
    config.model.condition = "superres"
    config.model.sr_scale = 4
    config.model.sr_sigma_y = 0.0
    config.model.class_conditional = False
    return config
