"""Pix2Pix (Isola et al. 2017: U-Net + PatchGAN, cGAN + 100 L1, Adam 2e-4 beta1 0.5) on Fashion-MNIST,
offline: edges -> image (Sobel edges of each image). `--config.model.condition=inpaint` gives masked ->
full inpainting (one random hole of 30-60 % of the side per image, the mask as an extra input channel).

    gm-jax train experiments/configs/pix2pix_fashion_mnist.py --workdir runs/pix2pix_edges
    gm-jax train experiments/configs/pix2pix_fashion_mnist.py --workdir runs/pix2pix_inpaint \
        --config.model.condition=inpaint
    python experiments/gan_image_to_image.py --workdir runs/pix2pix_edges   # input | output | target grid
"""

from gm_jax.gan.family import optim_defaults
from gm_jax.gan.image_to_image import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 32
    config.model = model_defaults("pix2pix")
    config.model.features = 32
    config.model.unet_depth = 3
    config.model.patch_layers = 2
    config.optim.update(optim_defaults())
    config.train.num_steps = 2000
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    config.train.sample_every = 500
    config.train.num_samples = 32
    config.train.eval_batches = 8
    return config
