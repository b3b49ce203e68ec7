"""GANs as pure functions: losses, penalties, theory checks, networks, image-to-image losses, diagnostics and
the GAN family (alternating updates behind the common Family protocol)."""

from gm_jax.gan.family import default_config, make_family, model_defaults, optim_defaults
from gm_jax.gan.losses import LOSSES, GANLoss, generator_loss, get_loss

__all__ = ["GANLoss", "LOSSES", "default_config", "generator_loss", "get_loss", "make_family",
           "model_defaults", "optim_defaults"]
