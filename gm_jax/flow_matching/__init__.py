"""Flow matching: conditional probability paths, mini-batch OT coupling, the CFM loss, ODE samplers
(Euler, Heun, Dormand-Prince), exact likelihood by the instantaneous change of variables, reflow, and
the flow-matching family."""

from gm_jax.flow_matching import coupling, family, losses, model, ode, paths
from gm_jax.flow_matching.family import SAMPLE_OPTIONS, make_family, model_defaults

__all__ = ["SAMPLE_OPTIONS", "coupling", "family", "losses", "make_family", "model", "model_defaults", "ode", "paths"]
