"""The first stage of latent diffusion (Rombach et al. 2022, Sec. 3.1): a KL-regularized autoencoder that maps
the full Fashion-MNIST's 28×28×1 images to 7×7×4 latents (two stride-2 levels of widths 32, 64), trained on
an MSE reconstruction loss (PSNR is the target; the paper uses L1) plus a 1e-6-weighted KL term (their KL-f8
weight; the loss's normalization is in
:mod:`gm_jax.autoencoders.kl_family`). A latent diffusion run builds on this run's work directory.

    gm-jax train experiments/configs/kl_autoencoder_fashion_mnist.py --workdir runs/kl_autoencoder_fashion_mnist

Budget (an estimate, not a measured full run): 0.57-0.9 s per step of batch 64 on the 2-core reference machine,
so 1500 steps take about 15-20 CPU-minutes. Measured on the embedded 5000-image subset with these settings:
eval/psnr 20.6 dB at step 300, 22.8 at 700, 23.4 at 1000 (520 s), still rising ~0.2 dB per 100 steps; the
target eval/psnr >= 25 dB (deterministic reconstructions z = μ, images in [0, 1]) likely needs ~1500-2000 steps.
"""

from gm_jax.autoencoders.kl_family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.scale = "minus_one_one"
    config.data.batch_size = 64
    config.model = model_defaults()
    config.model.latent_channels = 4
    config.model.channels = (32, 64)
    config.model.kl_weight = 1e-6
    config.model.recon_loss = "mse"
    config.optim.learning_rate = 2e-3
    config.train.num_steps = 1500
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    config.train.sample_every = 0
    config.train.num_samples = 64
    config.train.eval_batches = 0
    return config
