"""gm_jax: generative models of computer vision as pure, composable JAX functions."""

__version__ = "0.1.0"
