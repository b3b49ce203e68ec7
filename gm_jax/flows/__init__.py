"""Normalizing flows: bijectors (RealNVP coupling, ActNorm, LU 1x1 conv, squeeze, factor-out), models,
dequantization and the flow family."""

from gm_jax.flows import bijectors, family, model
from gm_jax.flows.bijectors import Chain, uniform_dequantize
from gm_jax.flows.family import make_family, model_defaults
from gm_jax.flows.model import Flow, image_flow, realnvp_vector

__all__ = ["Chain", "Flow", "bijectors", "family", "image_flow", "make_family", "model", "model_defaults",
           "realnvp_vector", "uniform_dequantize"]
