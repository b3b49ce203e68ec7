"""Autoregressive image models: masked convolutions, gated PixelCNN, exact discrete likelihoods and
sequential sampling (van den Oord et al. 2016a, 2016b; Salimans et al. 2017). The masked convolutions and
the gated PixelCNN live in :mod:`gm_jax.nn.pixelcnn` (shared with the VQ-VAE code prior); they are part of
this package's API."""

from gm_jax.autoregressive.likelihood import (
    categorical_log_prob,
    check_integer_levels,
    discretized_logistic_mixture_log_prob,
    image_log_prob,
    levels_to_unit,
    levels_to_values,
    values_to_levels,
)
from gm_jax.autoregressive.sample import (
    sample_categorical,
    sample_discretized_logistic_mixture,
    sequential_sample,
)
from gm_jax.nn.pixelcnn import (
    GatedPixelCNN,
    MaskedConv,
    autoregressive_mask,
    channel_groups,
    gated_activation,
    masked_conv2d,
    shift_down,
)

__all__ = [
    "GatedPixelCNN", "MaskedConv", "autoregressive_mask", "categorical_log_prob", "channel_groups",
    "check_integer_levels", "discretized_logistic_mixture_log_prob", "gated_activation", "image_log_prob",
    "levels_to_unit", "levels_to_values", "masked_conv2d", "sample_categorical",
    "sample_discretized_logistic_mixture", "sequential_sample", "shift_down", "values_to_levels",
]
