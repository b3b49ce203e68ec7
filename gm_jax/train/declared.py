"""The run-time options every family declares, kept as a JSON snapshot that the CLI reads without JAX.

Building ``gm-jax sample --help`` (or checking a flag's value before a model is loaded) needs every option
that any family declares (``SAMPLE_OPTIONS``, ``RESTORE_OPTIONS``, ``EDIT_OPTIONS`` of the family modules,
:func:`gm_jax.train.families.declared_options`). Importing the family modules imports JAX and flax, about
2–3 s of a 3 s ``--help``. The same declarations, written as data to ``declared_options.json`` beside this
module, give the flags in milliseconds. The snapshot is generated, never edited by hand:

    python -m gm_jax.train.declared          # rewrite gm_jax/train/declared_options.json

``tests/train/test_declared.py`` fails when the snapshot differs from the live declarations, so it cannot
drift; a missing or unreadable snapshot (a broken install) falls back to the live declarations, slower but
the same. A loaded family still checks the values against its own declarations.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from gm_jax.core.options import Option

SNAPSHOT = pathlib.Path(__file__).resolve().with_name("declared_options.json")
TABLES = {"sample": "SAMPLE_OPTIONS", "restore": "RESTORE_OPTIONS", "edit": "EDIT_OPTIONS"}
METHODS = "restore_methods"  # the snapshot's key for restoration method -> the options it takes
DeclaredTable = dict[str, tuple[list[Option], list[str]]]


def option_to_json(option: Option) -> dict[str, Any]:
    """The fields of ``option`` as JSON types."""
    return {**dataclasses.asdict(option), "choices": list(option.choices)}


def option_from_json(data: dict[str, Any]) -> Option:
    """The :class:`Option` written by :func:`option_to_json`."""
    return Option(**{**data, "choices": tuple(data["choices"])})


def live_tables() -> dict[str, DeclaredTable]:
    """command → (option name → (its declarations, the families declaring it)), from the family modules."""
    from gm_jax.train.families import declared_options

    return {command: declared_options(attribute) for command, attribute in TABLES.items()}


def live_methods() -> dict[str, list[str]]:
    """Restoration method -> the names of the options it takes, from the family modules' ``RESTORE_METHODS``
    tables (:func:`gm_jax.train.families.declared_methods`): the diffusion family's zero-shot posterior
    samplers and sr3, then the GAN generators' methods."""
    from gm_jax.train.families import declared_methods

    return declared_methods()


def tables_to_json(tables: dict[str, DeclaredTable]) -> dict[str, Any]:
    """The tables as JSON types (options in declaration order, family names as declared)."""
    return {command: {name: {"options": [option_to_json(o) for o in decls], "families": list(families)}
                      for name, (decls, families) in table.items()}
            for command, table in tables.items()}


def tables_from_json(data: dict[str, Any]) -> dict[str, DeclaredTable]:
    """The tables written by :func:`tables_to_json`."""
    return {command: {name: ([option_from_json(o) for o in entry["options"]], list(entry["families"]))
                      for name, entry in table.items()}
            for command, table in data.items() if command != METHODS}


def write_snapshot(path: str | pathlib.Path = SNAPSHOT) -> None:
    """Write the live declarations to ``path`` (sorted keys, one stable text)."""
    data = {**tables_to_json(live_tables()), METHODS: live_methods()}
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    pathlib.Path(path).write_text(text)


def declared_table(command: str, path: str | pathlib.Path = SNAPSHOT) -> DeclaredTable:
    """The declarations for ``command`` ('sample' — also used by ``eval`` —, 'restore', 'edit') from the
    snapshot; the live declarations when the snapshot is missing or unreadable."""
    try:
        tables = tables_from_json(json.loads(pathlib.Path(path).read_text()))
        return tables[command]
    except (OSError, ValueError, KeyError, TypeError):
        return live_tables()[command]


def restore_methods(path: str | pathlib.Path = SNAPSHOT) -> dict[str, list[str]]:
    """Restoration method -> its options' names (:func:`live_methods`) from the snapshot; the live ones when
    the snapshot is missing or unreadable."""
    try:
        methods = json.loads(pathlib.Path(path).read_text())[METHODS]
        if isinstance(methods, dict) and all(isinstance(v, list) for v in methods.values()):
            return {str(k): [str(n) for n in v] for k, v in methods.items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return live_methods()


if __name__ == "__main__":
    write_snapshot()
    print(f"wrote {SNAPSHOT}")
