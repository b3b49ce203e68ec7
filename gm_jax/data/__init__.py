"""Data: offline-first TFDS loading (our local builders, the embedded Fashion-MNIST subset), a
deterministic resumable pipeline, and toy 2-D samplers."""

from gm_jax.data.loading import DATASET_NAMES, ArrayData, default_data_dir, load_arrays, network_reachable, prepare
from gm_jax.data.pipeline import Pipeline, bernoulli_binarize, data_defaults, make_pipeline, scale_pixels
from gm_jax.data.toy2d import (
    EIGHT_GAUSSIANS_CENTRES,
    EIGHT_GAUSSIANS_STD,
    TOY_SAMPLERS,
    TWENTY_FIVE_GAUSSIANS_CENTRES,
    TWENTY_FIVE_GAUSSIANS_STD,
    checkerboard,
    eight_gaussians,
    gaussian_mixture_log_density,
    rings,
    swiss_roll,
    twenty_five_gaussians,
    two_moons,
)

__all__ = [
    "DATASET_NAMES", "EIGHT_GAUSSIANS_CENTRES", "EIGHT_GAUSSIANS_STD", "TOY_SAMPLERS",
    "TWENTY_FIVE_GAUSSIANS_CENTRES", "TWENTY_FIVE_GAUSSIANS_STD", "ArrayData", "Pipeline",
    "bernoulli_binarize", "checkerboard", "data_defaults", "default_data_dir", "eight_gaussians",
    "gaussian_mixture_log_density", "load_arrays", "make_pipeline", "network_reachable", "prepare", "rings",
    "scale_pixels", "swiss_roll", "twenty_five_gaussians", "two_moons",
]
