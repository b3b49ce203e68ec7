"""Normalizing flows: bijectors (RealNVP coupling, ActNorm, LU 1x1 conv, squeeze, factor-out), models and
the flow family."""

from gm_jax.flows import bijectors, family, model
from gm_jax.flows.bijectors import Chain
from gm_jax.flows.family import SAMPLE_OPTIONS, make_family, model_defaults
from gm_jax.flows.model import Flow, image_flow, realnvp_vector

__all__ = ["SAMPLE_OPTIONS", "Chain", "Flow", "bijectors", "family", "image_flow", "make_family", "model",
           "model_defaults", "realnvp_vector"]
