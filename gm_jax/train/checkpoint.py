"""Checkpoints with orbax: keep-last-N, atomic (orbax writes to a temporary folder and renames it when
complete, so a killed save never replaces a good checkpoint), restored against an abstract target so optax
states keep their types. No pickle: arrays go to orbax's tensorstore format."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from gm_jax.core.errors import CheckpointError


class Checkpointer:
    """Save and restore the train state of one work directory (``WORKDIR/checkpoints``)."""

    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as e:
            raise CheckpointError(f"cannot create checkpoint folder {self.directory} ({e.strerror}); "
                                  "choose a writable --workdir") from None
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def steps(self) -> list[int]:
        """Steps with a complete checkpoint, ascending."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any) -> None:
        """Save ``state`` as checkpoint ``step`` and wait until it is durable."""
        if step in self.steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restore checkpoint ``step`` (default: latest) into the structure of ``abstract_state``
        (e.g. ``jax.eval_shape(init, ...)``, with shardings attached to place arrays on the mesh)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}; train first with "
                                  "`gm-jax train CONFIG --workdir DIR`")
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as e:  # orbax raises many types for unreadable or mismatched files
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} cannot be restored ({first}); delete that step's "
                "folder to fall back to an earlier checkpoint, or use a new --workdir") from None

    def close(self) -> None:
        self._manager.close()


def abstract_like(tree: Any, sharding: jax.sharding.Sharding | None = None) -> Any:
    """``ShapeDtypeStruct`` tree of ``tree`` (arrays or shape structs), optionally with a sharding."""
    def leaf(x: Any) -> Any:
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
    return jax.tree.map(leaf, tree)
