"""The conditional flow matching loss (Lipman et al. 2023, eq. 9; Tong et al. 2023, eq. 14)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice
from gm_jax.flow_matching.coupling import ot_couple
from gm_jax.flow_matching.ode import VelocityFn
from gm_jax.flow_matching.paths import sample_path, target_velocity

COUPLINGS = ("independent", "ot")


def cfm_loss(velocity_fn: VelocityFn, key: jax.Array, x1: jax.Array, path: str = "linear",
             coupling: str = "independent", t_max: float = 1.0, x0: jax.Array | None = None,
             **path_args: Any) -> jax.Array:
    """``E_{t, (x0, x1)} |v(x_t, t) - u_t(x_t | x0, x1)|^2`` averaged over the batch (sum over the data
    dimensions), ``t ~ U[0, t_max]``, ``x0 ~ N(0, I)`` unless given (reflow pairs). ``coupling`` 'ot'
    re-pairs the batch by the exact mini-batch OT plan (Tong et al. 2023, Alg. 1), 'independent' keeps
    the product coupling (Lipman et al. 2023)."""
    check_choice("flow matching coupling", coupling, COUPLINGS)
    t_key, x0_key = jax.random.split(key)
    if x0 is None:
        x0 = jax.random.normal(x0_key, x1.shape, x1.dtype)
    if coupling == "ot":
        x0, x1 = ot_couple(x0, x1)
    t = jax.random.uniform(t_key, (x1.shape[0],), maxval=t_max)
    xt = sample_path(path, t, x0, x1, **path_args)
    target = target_velocity(path, t, x0, x1, **path_args)
    err = (velocity_fn(xt, t) - target) ** 2
    return jnp.mean(jnp.sum(err.reshape(err.shape[0], -1), axis=1))
