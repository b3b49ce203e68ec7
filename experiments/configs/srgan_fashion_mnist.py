"""SRGAN (Ledig et al. 2017) x2 on Fashion-MNIST: 14x14 box-downsampled inputs -> 28x28. Residual generator
with sub-pixel upsampling, DCGAN-style discriminator, content loss = pixel MSE + 0.1 x MSE of the shipped
Fashion-MNIST classifier's second-conv feature maps (our VGG stand-in) + 1e-3 adversarial. The final
evaluation logs eval/psnr and eval/psnr_bicubic on the first 1000 test images
(`--config.train.eval_batches=0`: all of them). `--config.model.scale=4` gives x4 (7x7 inputs).

    gm-jax train experiments/configs/srgan_fashion_mnist.py --workdir runs/srgan
    gm-jax eval --workdir runs/srgan --num_batches 0      # PSNR vs bicubic on the whole test split
"""

from gm_jax.gan.family import optim_defaults
from gm_jax.gan.image_to_image import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 32
    config.model = model_defaults("srgan")
    config.model.scale = 2
    config.model.features = 32
    config.model.num_blocks = 4
    config.optim.update(optim_defaults())
    config.optim.learning_rate = 1e-4
    config.train.num_steps = 2000
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    config.train.sample_every = 500
    config.train.num_samples = 32
    config.train.eval_batches = 2  # 1000 test images; 0 for the whole split (slow on CPU)
    config.train.eval_batch_size = 500
    return config
