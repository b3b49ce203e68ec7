"""Diffusion and score-based models: schedules, parametrizations, losses, samplers, exact Gaussian-mixture
test bed, likelihoods and the family glue (``gm_jax.diffusion.family``)."""

from gm_jax.diffusion.gmm import GaussianMixture, exact_denoiser, gaussian_mixture
from gm_jax.diffusion.parametrization import edm_preconditioning, make_denoiser
from gm_jax.diffusion.samplers import SamplerSpec, get_sampler, prior_sample, register_sampler, sampler_names
from gm_jax.diffusion.schedules import (
    SDE,
    DiscreteSchedule,
    Grid,
    cosine_alphas_cumprod,
    discrete_schedule,
    edm_sigmas,
    linear_betas,
    make_grid,
    make_sde,
)

__all__ = [
    "SDE", "DiscreteSchedule", "GaussianMixture", "Grid", "SamplerSpec", "cosine_alphas_cumprod",
    "discrete_schedule", "edm_preconditioning", "edm_sigmas", "exact_denoiser", "gaussian_mixture", "get_sampler",
    "linear_betas", "make_denoiser", "make_grid", "make_sde", "prior_sample", "register_sampler", "sampler_names",
]
