"""The train state every family shares, and the gradient/EMA updates built on it.

The state is plain data (a pytree of arrays) so that orbax can save it and ``jit`` can donate it. The
optimizers (optax ``GradientTransformation``s) are not in the state: a family closes over them.
A family with several networks (a GAN) stores dicts ``{"generator": ..., "discriminator": ...}`` in
``params``, ``opt_state`` and ``ema_params``; a non-gradient family (EM, CD-k) may leave ``opt_state``
empty and keep what it needs in ``extra``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

PyTree = Any


class TrainState(struct.PyTreeNode):
    """``step``: int32 scalar; ``rng``: root key of the run (``step_key(rng, step)`` keys each step);
    ``params``/``opt_state``: the trained pytrees; ``ema_params``: exponential moving average of params
    (``None`` when off); ``extra``: non-trained state (batch statistics, persistent chains, EM statistics).
    """

    step: jax.Array
    rng: jax.Array
    params: PyTree
    opt_state: PyTree
    ema_params: PyTree = None
    extra: PyTree = None

    @classmethod
    def create(cls, rng: jax.Array, params: PyTree, tx: optax.GradientTransformation | None = None,
               use_ema: bool = False, extra: PyTree = None) -> TrainState:
        """A state at step 0. ``opt_state = tx.init(params)`` (or ``()`` without ``tx``)."""
        opt_state = tx.init(params) if tx is not None else ()
        ema = jax.tree.map(jnp.copy, params) if use_ema else None
        return cls(step=jnp.zeros((), jnp.int32), rng=rng, params=params, opt_state=opt_state,
                   ema_params=ema, extra=extra)

    def sampling_params(self) -> PyTree:
        """EMA parameters when kept, else the raw parameters (what samplers and evaluation use)."""
        return self.ema_params if self.ema_params is not None else self.params


def ema_update(ema: PyTree, params: PyTree, decay: float | jax.Array) -> PyTree:
    """Exponential moving average ``ema ← decay·ema + (1 − decay)·params``."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def apply_gradients(state: TrainState, tx: optax.GradientTransformation, grads: PyTree,
                    ema_decay: float = 0.0, **changes: Any) -> TrainState:
    """One optimizer update: ``params ← params + tx.update(grads)``, EMA update, ``step + 1``.

    ``changes`` replace other fields at the same time (for example ``extra=new_batch_stats``).
    """
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
        ema = ema_update(ema, params, ema_decay)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema,
                         **changes)
