"""CycleGAN (Zhu et al. 2017: ResNet generators, PatchGAN critics, least-squares GAN loss, cycle weight 10,
identity weight 5, Adam 2e-4 beta1 0.5) on an unpaired task built offline from Fashion-MNIST: domain A =
sneakers (class 7), domain B = ankle boots (class 9); each step takes the first 16 of each from a shuffled
batch of 192 (no pairs exist).

    gm-jax train experiments/configs/cyclegan_fashion_mnist.py --workdir runs/cyclegan
    python experiments/gan_image_to_image.py --workdir runs/cyclegan   # A | G(A) | F(G(A)) and B | F(B) grid
"""

from gm_jax.gan.family import optim_defaults
from gm_jax.gan.image_to_image import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 192
    config.model = model_defaults("cyclegan")
    config.model.domain_a = (7,)
    config.model.domain_b = (9,)
    config.model.domain_size = 16
    config.model.features = 16
    config.model.num_blocks = 3
    config.optim.update(optim_defaults())
    config.train.num_steps = 2000
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    config.train.sample_every = 500
    config.train.num_samples = 32
    config.train.eval_batches = 4
    config.train.eval_batch_size = 500
    return config
