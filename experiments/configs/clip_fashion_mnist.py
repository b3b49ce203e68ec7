"""MiniCLIP (Radford et al. 2021) on the full Fashion-MNIST with generated captions (gm_jax.data.captions:
class name plus brightness/size words): symmetric InfoNCE with a learned temperature. Evaluation reports the
batch clip_loss, CLIPScore and zero-shot accuracy against the class prompts "a photo of a {class}". The
trained text encoder (``params["clip"]``) is what a text-conditioned latent diffusion run builds on.

    gm-jax train experiments/configs/clip_fashion_mnist.py --workdir runs/clip_fashion_mnist
    gm-jax eval --workdir runs/clip_fashion_mnist

Budget (an estimate): in the training loop this model at batch 128 ran at about 6.5 steps/s (0.15 s a step,
~800 images/s; 300 steps on the same-shaped fashion_mnist_small, on the 2-core reference machine while
shared with other jobs; a bare jitted step measured 0.12-0.18 s), so 3000 steps (~6 epochs), the compile
(~11 s) and three evaluations on the 10k test images come to about 8-10 CPU-minutes. After 300 steps
(still in warm-up) zero-shot accuracy was already ~0.6 on two eval batches.
"""

from gm_jax.clip.family import model_defaults
from gm_jax.train.config import base_config


def get_config():
    config = base_config()
    config.data.name = "fashion_mnist"
    config.data.scale = "minus_one_one"
    config.data.captions = True
    config.data.batch_size = 128
    config.model = model_defaults()
    config.model.family = "clip"
    config.model.embed_dim = 64
    config.model.width = 64
    config.model.depth = 2
    config.model.num_heads = 4
    config.model.image_channels = (32, 64)
    config.optim.name = "adam"  # no weight decay: CLIP exempts the temperature, and the net is small
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 200
    config.optim.schedule = "cosine"
    config.optim.decay_steps = 3000
    config.train.num_steps = 3000
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.eval_every = 1000
    config.train.eval_batches = 0
    return config
