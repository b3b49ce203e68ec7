"""Computation dtypes of the networks (mixed precision: parameters float32, arithmetic in ``dtype``)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gm_jax.core.errors import check_choice

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(model_config: Any) -> Any:
    """``model.dtype`` ('float32' | 'bfloat16') as a JAX dtype; configs saved before the field existed
    (no ``dtype``) compute in float32."""
    name = str(model_config.get("dtype", "float32"))
    check_choice("model.dtype", name, COMPUTE_DTYPES)
    return COMPUTE_DTYPES[name]
