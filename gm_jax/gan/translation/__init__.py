"""Image-to-image GAN tasks, one module each behind the common :class:`~gm_jax.gan.translation.common.ImageTask`
interface: :mod:`~gm_jax.gan.translation.pix2pix`, :mod:`~gm_jax.gan.translation.cyclegan`,
:mod:`~gm_jax.gan.translation.srgan`; :mod:`gm_jax.gan.image_to_image` assembles them into families."""
