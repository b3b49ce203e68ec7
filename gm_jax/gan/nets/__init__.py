"""GAN networks as linen modules (used through ``init`` / ``apply``), one module per architecture:
:mod:`~gm_jax.gan.nets.mlp`, :mod:`~gm_jax.gan.nets.dcgan`, :mod:`~gm_jax.gan.nets.stylegan`,
:mod:`~gm_jax.gan.nets.unet_patchgan` (Pix2Pix), :mod:`~gm_jax.gan.nets.cyclegan`,
:mod:`~gm_jax.gan.nets.srgan`, and the shared :mod:`~gm_jax.gan.nets.norms`.

Images are ``[B, H, W, C]`` in ``[-1, 1]``; image generators end in ``tanh`` (StyleGAN's synthesis output is
linear). Discriminators return logits (``[B]``, or ``[B, h, w, 1]`` for the PatchGAN).
"""
