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

from gm_jax.diffusion.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 128
    config.model = model_defaults()
    config.model.condition = "superres"
    config.model.sr_scale = 4
    config.model.sr_sigma_y = 0.0
    config.model.unet = "small"
    config.model.class_conditional = False
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
