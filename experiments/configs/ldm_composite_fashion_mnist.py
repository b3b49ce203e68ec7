"""Text-to-image latent diffusion on two-object Fashion-MNIST canvases (28×56): the recipe of
`ldm_text_fashion_mnist.py` (EDM preconditioning, the same frozen KL autoencoder, now giving 7×14×4 latents,
a jointly trained text transformer) on captions with position words, e.g. "a sneaker on the left and a bag
on the right" (``data.composite``; gm_jax.data.pipeline). Batch 64, so a step sees as many pixels as a
step of the one-object recipe at batch 128.

    gm-jax train experiments/configs/kl_autoencoder_fashion_mnist.py --workdir runs/kl_autoencoder
    gm-jax train experiments/configs/ldm_composite_fashion_mnist.py --workdir runs/ldm_composite \\
        --config.model.first_stage=runs/kl_autoencoder
    gm-jax sample --workdir runs/ldm_composite --prompt "a sneaker on the left and a bag on the right" \\
        --guidance 4 --num 16
    python experiments/composite_position_study.py --workdir runs/ldm_composite --guidance 1,2,4,6

Measured in docs/results.md ("Two objects, position words, and the frozen-CLIP text encoder"): position
accuracy 0.23 at guidance 4 (both items drawn 0.42, on swapped sides 0.19): the model does not bind the sides.
"""

import os

from gm_jax.train.config import load_config_file


def get_config():
    """The one-object recipe's config on two-object canvases at half the batch."""
    config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ldm_text_fashion_mnist.py"))
    config.data.composite = True
    config.data.batch_size = 64
    return config
