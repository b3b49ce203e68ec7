"""The shipped gallery: trained models stored as flax msgpack weights with a JSON sidecar, loaded by name.

Each model ``NAME`` is two files in :data:`WEIGHTS_DIR` (the pattern of the shipped feature networks in
``gm_jax/metrics/weights``):

* ``NAME.msgpack``: ``flax.serialization.msgpack_serialize`` of the parameters' state dict (no pickle) — the
  parameters the family samples and evaluates with (``TrainState.sampling_params()``: EMA when kept),
  floating leaves in the sidecar's ``storage_dtype`` (float16 or float32; computation is float32);
* ``NAME.json``: name, family, data, the resolved config of the run, the data spec and example-batch layout
  that rebuild the family without data, training steps, CPU time and command, the export command, metrics
  (``headline``: name and value), a ``check`` metric recomputable on a small fixed batch, and the sha256 and
  size of the msgpack file.

:func:`load` verifies the file's size and sha256 before anything reads it; a missing, truncated or corrupt
file is one :class:`~gm_jax.core.errors.CheckpointError` line naming the file and the fix, an unknown name a
:class:`~gm_jax.core.errors.ConfigError` listing the known ones. Reading the sidecars (:func:`names`,
:func:`models`) imports no JAX.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
from typing import Any

from gm_jax.core.errors import CheckpointError, ConfigError, require

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"
SIDECAR_FORMAT = 1
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]*$")
REINSTALL = "pip install --force-reinstall --no-deps gm-jax"


def _root(weights_dir: str | os.PathLike | None) -> pathlib.Path:
    return pathlib.Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR


def check_name(name: str) -> None:
    """A model name is lower-case letters, digits and underscores (it names two files)."""
    require(bool(NAME_PATTERN.match(name)), f"model name {name!r} is not valid; use lower-case letters, digits "
            "and underscores, e.g. vae_fashion_mnist_small")


def paths(name: str, weights_dir: str | os.PathLike | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """``(<dir>/<name>.msgpack, <dir>/<name>.json)``."""
    root = _root(weights_dir)
    return root / f"{name}.msgpack", root / f"{name}.json"


def names(weights_dir: str | os.PathLike | None = None) -> list[str]:
    """The names of the models in the gallery (every ``*.json`` sidecar), sorted."""
    root = _root(weights_dir)
    if not root.is_dir():
        return []
    return sorted(p.stem for p in root.glob("*.json") if NAME_PATTERN.match(p.stem))


def read_sidecar(name: str, weights_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The sidecar of model ``name``; an unknown name lists the known ones, an unreadable sidecar is one line."""
    known = names(weights_dir)
    if name not in known:
        raise ConfigError(f"unknown pretrained model {name!r}; choose one of: {', '.join(known) or '(none shipped)'} "
                          "(`gm-jax pretrained list` shows them)")
    _, json_path = paths(name, weights_dir)
    try:
        sidecar = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"sidecar {json_path} is unreadable ({type(e).__name__}); reinstall the package "
                              f"({REINSTALL}) or export the model again") from None
    needed = ("name", "family", "config", "data_spec", "batch_spec", "storage_dtype", "sha256", "size_bytes")
    missing = [k for k in needed if k not in sidecar] if isinstance(sidecar, dict) else list(needed)
    if missing or sidecar.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(f"sidecar {json_path} is not a gm_jax pretrained sidecar of format {SIDECAR_FORMAT} "
                              f"(missing {', '.join(missing) or 'format'}); export the model again with "
                              "`gm-jax pretrained export`")
    return sidecar


def _fix(sidecar: dict[str, Any]) -> str:
    command = sidecar.get("export_command")
    return f"reinstall the package ({REINSTALL})" + (f" or re-export it with `{command}`" if command else "")


def read_weights(name: str, weights_dir: str | os.PathLike | None = None) -> tuple[bytes, dict[str, Any]]:
    """The msgpack bytes of model ``name`` and its sidecar, after checking the file's size and sha256."""
    sidecar = read_sidecar(name, weights_dir)
    path, json_path = paths(name, weights_dir)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} of pretrained model {name!r} is missing; {_fix(sidecar)}")
    blob = path.read_bytes()
    size = int(sidecar["size_bytes"])
    if len(blob) != size:
        raise CheckpointError(f"weights file {path} is truncated or padded ({len(blob)} bytes, {json_path.name} "
                              f"records {size}); {_fix(sidecar)}")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != sidecar["sha256"]:
        raise CheckpointError(f"weights file {path} is corrupt (sha256 {digest[:12]}…, {json_path.name} records "
                              f"{str(sidecar['sha256'])[:12]}…); {_fix(sidecar)}")
    return blob, sidecar


@dataclasses.dataclass(frozen=True)
class ModelRow:
    """One row of ``gm-jax pretrained list``."""

    name: str
    family: str
    data: str
    size_bytes: int | None
    metric: str
    value: float | None


def models(weights_dir: str | os.PathLike | None = None) -> list[ModelRow]:
    """Every model of the gallery: name, family, data, size on disk (None: weights missing), headline metric."""
    rows = []
    for name in names(weights_dir):
        sidecar = read_sidecar(name, weights_dir)
        path = paths(name, weights_dir)[0]
        headline = sidecar.get("metrics", {}).get("headline", {})
        rows.append(ModelRow(name, str(sidecar["family"]), str(sidecar.get("data", "")),
                             path.stat().st_size if path.is_file() else None, str(headline.get("name", "")),
                             headline.get("value")))
    return rows


def format_table(rows: list[ModelRow]) -> str:
    """The rows as an aligned text table (sizes in kB)."""
    table = [("name", "family", "data", "size", "headline metric")]
    for r in rows:
        size = "missing" if r.size_bytes is None else f"{r.size_bytes / 1000:.0f} kB"
        metric = f"{r.metric} = {r.value:.4g}" if r.value is not None else "-"
        table.append((r.name, r.family, r.data, size, metric))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)


__all__ = ["ModelRow", "SIDECAR_FORMAT", "WEIGHTS_DIR", "check_name", "format_table", "models", "names", "paths",
           "read_sidecar", "read_weights"]
