"""The paper-scale CIFAR-10 DDPM config dry-runs on CPU: its train state has the paper's 35.7M parameters
(Ho et al. 2020, App. B), found by jax.eval_shape without computing anything."""

import math
from pathlib import Path

import jax
import jax.numpy as jnp

from gm_jax.core import DataSpec
from gm_jax.diffusion.family import make_family
from gm_jax.train.config import load_config_file

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "ddpm_cifar10_paper.py"


def test_ddpm_cifar10_config_has_35_7m_parameters():
    config = load_config_file(str(CONFIG))
    family = make_family(config, DataSpec(shape=(32, 32, 3), num_classes=10, levels=256, name="cifar10"))
    batch = {"x": jax.ShapeDtypeStruct((128, 32, 32, 3), jnp.float32),
             "label": jax.ShapeDtypeStruct((128,), jnp.int32)}
    state = jax.eval_shape(family.init, jax.random.key(0), batch)
    count = sum(math.prod(p.shape) for p in jax.tree.leaves(state.params))
    assert round(count / 1e6, 1) == 35.7, count
    assert state.ema_params is not None  # EMA 0.9999 as in the paper
