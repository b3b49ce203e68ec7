"""Checkpoints with orbax, each step sealed by a manifest of its files and verified before use.

Orbax writes a step into a temporary folder and renames it when complete, so a killed save never replaces a
good checkpoint; keep-last-N deletes the oldest steps. That does not catch a step whose bytes changed later
(a flipped bit on disk, a truncated copy): tensorstore may decode such a chunk into different numbers
without an error. So after orbax has finished a step, :meth:`Checkpointer.save` writes a manifest of every
file of the step (relative path, size, SHA-256; FIPS 180-4) and :meth:`Checkpointer.restore` checks it.

On-disk layout (``WORKDIR/checkpoints``)::

    300/                          an orbax step folder, listed by ``all_steps()``
        gm_jax_manifest.json      {"format", "version", "step", "files": [{"path", "size", "sha256"}]}
        _CHECKPOINT_METADATA, default/...   orbax's own files (the manifest lists them all)
    corrupt/300-hash-mismatch/    a step moved aside by ``restore`` (never deleted; orbax lists no
                                  folder whose name is not an integer, so it is no longer a step)

The manifest is written last, to a temporary file that is fsync'ed and then renamed (``os.replace``) into
the step folder, so a step has a manifest only once its save finished. A step without one is treated as
corrupt (its save did not finish), except in a directory where no step has a manifest: such a directory
was written before manifests existed, and its steps (which orbax's own commit protocol marked complete)
are used unverified rather than discarded.

Restoring (newest first): a step that fails verification, or whose orbax restore raises, is moved to
``corrupt/`` and a one-line notice goes to ``notify``; the next older step is tried. A step that belongs to
a different model (tree structure or shapes unlike the abstract target) is left in place and raises one
line naming the first mismatched leaf. Arrays are restored against an abstract target so optax states keep
their types. No pickle: arrays go to orbax's tensorstore format.

Several processes: every process calls ``save``/``restore`` (orbax's own calls are collective). Only
process 0 writes manifests and moves steps aside, then all processes meet at a barrier
(``sync_global_devices``) so they see the same folder. Every process verifies on its own (read-only), which
assumes they read one shared file system and so reach the same verdict.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from gm_jax.core.errors import CheckpointError

MANIFEST = "gm_jax_manifest.json"
MANIFEST_FORMAT = "gm_jax-checkpoint-manifest"
CORRUPT_DIR = "corrupt"
_CHUNK = 1 << 20


def _serial_copies_on_cpu() -> None:
    """On the CPU backend, save each array from one replica instead of orbax's replica-parallel default.

    Replica-parallel saving splits every replicated array into one slice per device so that the devices'
    transfers to the host overlap; the devices of a CPU are the host, so nothing overlaps and each slice is an
    eager op (with 8 simulated devices, a tiny U-Net's two checkpoints cost 7 296 slices, ~10 CPU-s). orbax
    makes the same choice on GPUs. The files are the same either way; TPU runs keep orbax's default."""
    if jax.default_backend() == "cpu":
        handler = ocp.type_handlers.ArrayHandler(use_replica_parallel=False)
        ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


def _default_notify(line: str) -> None:
    print(f"gm-jax: {line}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- manifests


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _step_files(folder: str) -> list[str]:
    """Relative paths ('/'-separated, sorted) of every file under ``folder`` except the manifest."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if not rel.startswith(MANIFEST):
                found.append(rel)
    return sorted(found)


def build_manifest(folder: str, step: int) -> dict:
    """The manifest of a step folder: every file's relative path, size in bytes and SHA-256."""
    files = [{"path": rel, "size": os.path.getsize(os.path.join(folder, rel)),
              "sha256": _sha256(os.path.join(folder, rel))} for rel in _step_files(folder)]
    return {"format": MANIFEST_FORMAT, "version": 1, "step": int(step), "files": files}


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open a folder; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_manifest(folder: str, step: int) -> None:
    """Write ``folder/gm_jax_manifest.json`` atomically: a temporary file, fsync, ``os.replace``."""
    tmp = os.path.join(folder, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(build_manifest(folder, step), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, MANIFEST))
    _fsync_dir(folder)


def _read_manifest(folder: str) -> tuple[dict | None, str | None]:
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        return None, "manifest missing"
    try:
        with open(path) as f:
            manifest = json.load(f)
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, list):
            return None, "manifest unreadable"
        return manifest, None
    except (OSError, ValueError, KeyError, TypeError):
        return None, "manifest unreadable"


def _check_file(folder: str, entry: dict) -> str | None:
    rel, size = entry["path"], int(entry["size"])
    path = os.path.join(folder, *rel.split("/"))
    if not os.path.isfile(path):
        return f"{rel}: file missing"
    actual = os.path.getsize(path)
    if actual < size:
        return f"{rel}: truncated ({actual} of {size} bytes)"
    if actual > size:
        return f"{rel}: size changed ({actual} bytes, expected {size})"
    if _sha256(path) != entry["sha256"]:
        return f"{rel}: hash mismatch"
    return None


def verify_folder(folder: str, step: int | None = None) -> str | None:
    """None when every file the manifest of ``folder`` lists is present with its size and SHA-256, else a
    short reason (``"manifest missing"``, ``"default/d/ab12: hash mismatch"``, ``"...: truncated (123 of
    456 bytes)"``, ``"...: file missing"``)."""
    if not os.path.isdir(folder):
        return "folder missing"
    manifest, reason = _read_manifest(folder)
    if reason is not None:
        return reason
    if step is not None and manifest.get("step") != step:
        return f"manifest belongs to step {manifest.get('step')}"
    try:
        for entry in manifest["files"]:
            reason = _check_file(folder, entry)
            if reason is not None:
                return reason
    except (OSError, KeyError, TypeError, ValueError) as e:
        return f"unreadable ({type(e).__name__})"
    return None


# ---------------------------------------------------------------------------------------------- messages

_REPR = re.compile(r"<(?:bound method |built-in method )[^<>]*>|<[^<>]* at 0x[0-9a-fA-F]+>|<[^<>]*pybind11[^<>]*>")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+\b")


def one_line(text: str, limit: int = 160) -> str:
    """The first non-empty line of ``text`` without reprs of bound methods or object addresses, at most
    ``limit`` characters (for error messages built from library exceptions)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line, previous = lines[0] if lines else "", None
    while line != previous:  # innermost reprs first, so nested ones go too
        line, previous = _REPR.sub("", line), line
    line = _ADDRESS.sub("", line)
    line = re.sub(r"\s+", " ", line).strip(" :;,")
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


def _slug(reason: str) -> str:
    kind = reason.rsplit(": ", 1)[-1].split("(")[0]
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")[:40] or "corrupt"


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _shapes_by_path(tree: Any) -> dict[str, tuple | None]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in leaves:
        shape = getattr(leaf, "shape", None)
        out[".".join(_key_name(k) for k in path)] = tuple(shape) if shape is not None else None
    return out


def model_mismatch(stored_tree: Any, abstract_state: Any, shapes_only: bool = False) -> str | None:
    """The first leaf where a checkpoint's metadata tree and the abstract target differ in shape
    (``"params.w: stored (8, 8), this model (4, 8)"``) or, unless ``shapes_only``, in presence
    (``"params.v: not in the checkpoint"``); None when they agree."""
    stored, wanted = _shapes_by_path(stored_tree), _shapes_by_path(abstract_state)
    for name, shape in wanted.items():
        if name not in stored:
            if shapes_only:
                continue
            return f"{name}: not in the checkpoint"
        if shape is not None and stored[name] is not None and stored[name] != shape:
            return f"{name}: stored {stored[name]}, this model {shape}"
    for name in ([] if shapes_only else stored):
        if name not in wanted:
            return f"{name}: in the checkpoint, not in this model"
    return None


_MISMATCH_WORDS = ("structure mismatch", "not compatible with the stored shape", "expected identical structures")


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in str(error)


# ---------------------------------------------------------------------------------------------- checkpointer


class Checkpointer:
    """Save and restore the train state of one work directory (``WORKDIR/checkpoints``), with manifests.

    ``notify(line)`` receives the one-line notices of ``restore`` (default: printed to stderr).
    After a successful ``restore``, ``restored_step`` holds the step that was loaded.
    """

    def __init__(self, directory: str, keep: int = 3, notify: Callable[[str], None] | None = None):
        self.directory = os.path.abspath(directory)
        self.notify = notify if notify is not None else _default_notify
        self.restored_step: int | None = None
        self._keep = keep
        self._opened: ocp.CheckpointManager | None = None

    @property
    def _manager(self) -> ocp.CheckpointManager:
        """orbax's manager, opened on first use; the folder is created only by the first save (reading a
        work directory never writes to it)."""
        if self._opened is None:
            if not os.path.isdir(self.directory):
                try:
                    os.makedirs(self.directory, exist_ok=True)
                except OSError as e:
                    raise CheckpointError(f"cannot create checkpoint folder {self.directory} ({e.strerror}); "
                                          "choose a writable --workdir") from None
            _serial_copies_on_cpu()
            self._opened = ocp.CheckpointManager(
                self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=self._keep, create=True))
        return self._opened

    def step_folder(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def steps(self) -> list[int]:
        """Steps with a complete orbax checkpoint, ascending (verified or not; see ``verified_steps``)."""
        if self._opened is None and not os.path.isdir(self.directory):
            return []
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def _legacy(self) -> bool:
        """True when no step has a manifest: a directory written before manifests existed."""
        return not any(os.path.exists(os.path.join(self.step_folder(s), MANIFEST)) for s in self.steps())

    def verify(self, step: int) -> str | None:
        """None when checkpoint ``step`` matches its manifest, else a short reason (see ``verify_folder``).
        Steps of a directory without any manifest (written before manifests existed) pass unverified."""
        reason = verify_folder(self.step_folder(step), step)
        if reason == "manifest missing" and self._legacy():
            return None
        return reason

    def verified_steps(self) -> list[int]:
        """Steps that pass ``verify``, ascending (hashes every file: costs one read of each checkpoint)."""
        return [s for s in self.steps() if self.verify(s) is None]

    def save(self, step: int, state: Any) -> None:
        """Save ``state`` as checkpoint ``step``, wait until it is durable, then seal it with its manifest
        (written by process 0; every process waits at a barrier until it exists)."""
        if step in self.steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()
        folder = self.step_folder(step)
        if jax.process_index() == 0 and os.path.isdir(folder):
            write_manifest(folder, step)
        _barrier(f"gm_jax_manifest_{step}")

    def restore(self, abstract_state: Any, step: int | None = None, verb: str = "using") -> Any:
        """Restore into the structure of ``abstract_state`` (e.g. ``jax.eval_shape(init, ...)``, with
        shardings attached to place arrays on the mesh) and return the state; ``restored_step`` names the
        step.

        ``step=None``: the newest step that verifies and restores; each newer one that does not is moved to
        ``corrupt/`` with a notice ``checkpoint 300 is corrupt (REASON); moved to DIR; {verb} 250``
        (``verb`` e.g. "resuming from"). An explicit ``step`` is used as is or raises (nothing is moved).
        A checkpoint of a different model (structure or shapes) raises and is never moved."""
        if step is not None:
            return self._restore_given(abstract_state, step)
        steps = self.steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}; train first with "
                                  "`gm-jax train CONFIG --workdir DIR`")
        bad: list[tuple[int, str, str]] = []
        for candidate in reversed(steps):
            try:
                state, reason = self._verified_restore(abstract_state, candidate)
            except CheckpointError:
                self._announce(bad, f"stopped at {candidate}")
                raise
            if reason is None:
                self._announce(bad, f"{verb} {candidate}")
                self.restored_step = candidate
                return state
            bad.append((candidate, reason, self._quarantine(candidate, reason)))
        # no notices here: the error line below names every bad step and where it went (one line in all)
        raise CheckpointError(
            f"no checkpoint in {self.directory} verifies ({_bad_summary(bad)}); they were moved to "
            f"{os.path.join(self.directory, CORRUPT_DIR)}: move a step folder back to retry it, or use a new "
            "--workdir to start over")

    def _restore_given(self, abstract_state: Any, step: int) -> Any:
        if step not in self.steps():
            raise CheckpointError(f"no checkpoint {step} in {self.directory}; choose one of {self.steps()}")
        state, reason = self._verified_restore(abstract_state, step)
        if reason is not None:
            raise CheckpointError(f"checkpoint {step} in {self.directory} is corrupt ({reason}); restore "
                                  "the newest good step instead (leave the step unset)")
        self.restored_step = step
        return state

    def _verified_restore(self, abstract_state: Any, step: int) -> tuple[Any, str | None]:
        """``(state, None)`` when ``step`` verifies and orbax restores it, else ``(None, why not)``. Raises a
        CheckpointError (nothing is moved) when it belongs to a different model or memory ran out."""
        reason = self.verify(step)
        if reason is not None:
            return None, reason
        self._refuse_other_model(step, self._stored_mismatch(step, abstract_state, shapes_only=True))
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state)), None
        except Exception as e:  # orbax and tensorstore raise many types for unreadable or mismatched files
            self._refuse_other_model(step, self._mismatch(step, abstract_state, e))
            if _is_out_of_memory(e):
                raise CheckpointError(f"checkpoint {step} in {self.directory} does not fit in memory "
                                      f"({one_line(e)}); free memory or use more devices") from None
            return None, f"restore failed: {one_line(e) or type(e).__name__}"

    def _stored_mismatch(self, step: int, abstract_state: Any, shapes_only: bool) -> str | None:
        """``model_mismatch`` against the metadata orbax stored for ``step`` (None when unreadable)."""
        try:
            metadata = self._manager.item_metadata(step)
            return model_mismatch(getattr(metadata, "tree", metadata), abstract_state, shapes_only)
        except Exception:  # unreadable metadata: nothing to judge from
            return None

    def _mismatch(self, step: int, abstract_state: Any, error: BaseException) -> str | None:
        """Why ``step``, which orbax failed to restore, belongs to another model (from its stored metadata,
        or failing that from orbax's message); None when it does not look like another model's."""
        found = self._stored_mismatch(step, abstract_state, shapes_only=False)
        if found is None and any(w in str(error).lower() for w in _MISMATCH_WORDS):
            found = one_line(error, 120)
        return found

    def _refuse_other_model(self, step: int, mismatch: str | None) -> None:
        if mismatch is not None:
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} belongs to a different model ({mismatch}); use the "
                "config it was trained with, or a new --workdir") from None

    def _quarantine(self, step: int, reason: str) -> str:
        """Move step ``step`` to ``corrupt/<step>-<reason>`` (process 0; all processes wait); its new path."""
        base = os.path.join(self.directory, CORRUPT_DIR, f"{step}-{_slug(reason)}")
        target, n = base, 1
        while os.path.exists(target):
            n += 1
            target = f"{base}-{n}"
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(self.step_folder(step), target)
            _fsync_dir(self.directory)
        _barrier(f"gm_jax_quarantine_{step}")
        self._manager.reload()
        return target

    def _announce(self, bad: list[tuple[int, str, str]], outcome: str | None) -> None:
        for i, (step, reason, moved) in enumerate(bad):
            then = bad[i + 1][0] if i + 1 < len(bad) else None
            tail = f"trying {then}" if then is not None else (outcome or "no older checkpoint left")
            self.notify(f"checkpoint {step} is corrupt ({reason}); moved to {moved}; {tail}")

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()


def _bad_summary(bad: list[tuple[int, str, str]]) -> str:
    parts = [f"{step}: {reason}" for step, reason, _ in bad[:3]]
    return "; ".join(parts) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def abstract_like(tree: Any, sharding: jax.sharding.Sharding | None = None) -> Any:
    """``ShapeDtypeStruct`` tree of ``tree`` (arrays or shape structs), optionally with a sharding."""
    def leaf(x: Any) -> Any:
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
    return jax.tree.map(leaf, tree)
