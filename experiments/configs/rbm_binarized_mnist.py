"""Bernoulli RBM (500 hidden units, as Salakhutdinov & Murray 2008) trained by persistent contrastive
divergence (Tieleman 2008) on dynamically binarized MNIST; its test NLL comes from annealed importance
sampling of log Z (Salakhutdinov & Murray 2008). The step size is ``config.optim`` (SGD with momentum,
cosine-decayed to zero: PCD needs a small final learning rate for its chains to track the model).

    gm-jax train experiments/configs/rbm_binarized_mnist.py --workdir runs/rbm_mnist
    python experiments/rbm_ais_nll.py --workdir runs/rbm_mnist      # the headline AIS NLL, two AIS runs

The end-of-run ``eval/nll`` is a quick check: one AIS run (``model.ais_chains`` x ``model.ais_betas``,
base rates of that batch) per eval batch, here the first batch of 128 (statically binarized) test images;
the headline number comes from ``experiments/rbm_ais_nll.py`` over all 10 000.
"""

from gm_jax.classical.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "mnist"
    config.data.scale = "zero_one"
    config.data.binarize = "dynamic"
    config.data.batch_size = 128
    config.model = model_defaults()
    config.model.family = "rbm"
    config.model.num_hidden = 500
    config.model.cd_steps = 1
    config.model.persistent = True
    config.model.num_chains = 128
    config.model.weight_decay = 1e-4
    config.optim.name = "sgd"            # Hinton (2010) sec. 9: SGD with momentum on the CD direction
    config.optim.learning_rate = 0.05
    config.optim.momentum = 0.5
    config.optim.schedule = "cosine"
    config.optim.decay_steps = 15000
    config.model.ais_chains = 100
    config.model.ais_betas = 5000
    config.model.sample_steps = 1000
    config.train.num_steps = 15000       # 32 epochs of 468 batches
    config.train.steps_per_call = 10
    config.train.log_every = 500
    config.train.checkpoint_every = 2500
    config.train.eval_batches = 1
    return config
