"""The gallery's gated PixelCNN on statically binarized MNIST (issue 17): ``pixelcnn_binarized_mnist.py`` at
hidden 32 (8 layers) for 2000 steps with EMA 0.995 — what about 40 CPU-minutes buy on the 2-core machine
(the masked convolutions' weight gradients go through ``gm_jax.nn.im2col``).

    nice -n 15 gm-jax train experiments/configs/pixelcnn_binarized_mnist_gallery.py --workdir runs/pixelcnn_gallery
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    here = os.path.dirname(os.path.abspath(__file__))
    config = load_config_file(os.path.join(here, "pixelcnn_binarized_mnist.py"))
    config.model.hidden = 32
    config.optim.ema_decay = 0.995
    config.train.num_steps = 2000
    config.train.checkpoint_every = 250
    config.train.eval_batches = 4
    return config
