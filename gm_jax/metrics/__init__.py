"""Evaluation metrics: FID, KID, IS, PRDC on features of a feature network; PSNR and SSIM; toy-data distances;
likelihood units. All are pure functions of arrays (and explicit PRNG keys where they subsample)."""

from gm_jax.metrics.features import (
                                     KNOWN_EXTRACTORS,
                                     CNNFeatureExtractor,
                                     FeatureExtractor,
                                     SmallCNN,
                                     check_cnn_images,
                                     load_feature_extractor,
                                     save_feature_extractor,
)
from gm_jax.metrics.frechet import FewSamplesWarning, feature_statistics, fid, frechet_distance
from gm_jax.metrics.image_quality import psnr, ssim
from gm_jax.metrics.inception_score import inception_score
from gm_jax.metrics.kid import kid, polynomial_kernel, polynomial_mmd2
from gm_jax.metrics.likelihood import (
                                     bits_per_dim_to_nats,
                                     continuous_nll_to_bits_per_dim,
                                     dequantization_offset,
                                     discrete_nll_from_continuous,
                                     importance_sampled_nll,
                                     iwae_bound,
                                     log_mean_exp,
                                     nats_to_bits_per_dim,
)
from gm_jax.metrics.prdc import prdc
from gm_jax.metrics.toy import energy_distance, rbf_mmd2, sliced_wasserstein, wasserstein_1d

__all__ = [
    "KNOWN_EXTRACTORS", "CNNFeatureExtractor", "FeatureExtractor", "FewSamplesWarning", "SmallCNN",
    "bits_per_dim_to_nats", "check_cnn_images", "continuous_nll_to_bits_per_dim", "dequantization_offset",
    "discrete_nll_from_continuous", "energy_distance", "feature_statistics", "fid", "frechet_distance",
    "importance_sampled_nll", "inception_score", "iwae_bound", "kid", "load_feature_extractor",
    "log_mean_exp", "nats_to_bits_per_dim", "polynomial_kernel", "polynomial_mmd2", "prdc", "psnr", "rbf_mmd2",
    "save_feature_extractor", "sliced_wasserstein", "ssim", "wasserstein_1d",
]
