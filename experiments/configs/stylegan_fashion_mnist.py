"""A small StyleGAN2-style generator (Karras et al. 2019; 2020) on Fashion-MNIST, sized to train on a CPU:
mapping network z (64) -> w (64) with 4 layers, synthesis from a learned 7x7 constant through 14x14 to 28x28
with modulated/demodulated 3x3 convolutions (16 channels), per-layer noise inputs and a modulated 1x1 toRGB
(6 styles); style-mixing regularisation on 90 % of the generated training images (random crossover layer).
The mapping network uses the equalised learning rate with the paper's multiplier 0.01. Discriminator: the
DCGAN one (32 channels) with a minibatch-stddev channel (Karras et al. 2018); non-saturating loss; Adam
beta1 0.5, generator lr 1e-3 (its convolutions use the equalised learning rate), discriminator lr 2e-4.
(Without the mapping multiplier and the minibatch-stddev channel this setting collapsed to one image.)

    gm-jax train experiments/configs/stylegan_fashion_mnist.py --workdir runs/gan_stylegan
    gm-jax sample --workdir runs/gan_stylegan --num 64 --truncation 0.7
    python experiments/gan_grids.py mixing --workdir runs/gan_stylegan --out docs/figures/gan_stylegan_mixing.png
"""

from gm_jax.gan.family import model_defaults, optim_defaults, stylegan_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 32
    config.model = model_defaults()
    config.model.update(dict(stylegan_defaults()))
    config.model.architecture = "stylegan"
    config.model.features = 16          # synthesis channels
    config.model.discriminator_features = 32
    config.model.latent_dim = 64
    config.model.w_dim = 64
    config.model.mapping_layers = 4
    config.model.style_mixing = 0.9
    config.model.loss = "non_saturating"
    config.model.generator_lr = 1e-3
    config.model.discriminator_lr = 2e-4
    config.optim.update(optim_defaults())
    config.train.num_steps = 600
    config.train.log_every = 50
    config.train.checkpoint_every = 200
    config.train.sample_every = 200
    return config
