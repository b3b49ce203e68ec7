"""Configs: ml_collections files with ``get_config()``, command-line overrides, and the run's config.json.

A config has the sections ``seed``, ``data``, ``model`` (with ``model.family`` naming the family), ``optim``
and ``train``. ``base_config()`` gives every section but ``model``; a config file adds the family's
``model_defaults()`` and changes what it needs.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from gm_jax.core.errors import CheckpointError, ConfigError
from gm_jax.train.launch import check_launch, launch_defaults

CONFIG_FILE = "config.json"  # a run's config in its work directory


def optim_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.optim`` read by :func:`gm_jax.core.make_optimizer` (plus ``ema_decay``)."""
    return ml_collections.ConfigDict(dict(
        name="adam", learning_rate=1e-3, b1=0.9, b2=0.999, weight_decay=0.0, momentum=0.9,
        grad_clip=0.0, warmup_steps=0, schedule="constant", decay_steps=0, ema_decay=0.0))


def train_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.train`` read by the loop in :mod:`gm_jax.train.loop`."""
    return ml_collections.ConfigDict(dict(
        num_steps=1000,          # total optimizer steps of the run
        steps_per_call=1,        # k > 1 fuses k steps into one compiled call (lax.scan)
        log_every=50,            # metrics.jsonl / TensorBoard / progress bar
        checkpoint_every=500,    # orbax checkpoint (and always at the end)
        keep_checkpoints=3,      # keep-last-N
        sample_every=0,          # PNG sample grid every N steps (0: only at the end)
        num_samples=64,          # images in a sample grid / final .npz
        eval_every=0,            # family.evaluate on the eval split every N steps (0: only at the end)
        eval_batches=4,          # eval batches per evaluation (0: the whole eval split)
        eval_batch_size=0,       # global eval batch size (0: data.batch_size)
        progress=True,           # tqdm progress bar
        num_devices=0,           # devices of the data-parallel mesh (0: all); e.g. 1 to compare with 8
        # multi-host: join JAX's distributed runtime (gm_jax.train.launch; addresses found on TPU/Slurm/MPI)
        **launch_defaults(),
    ))


def base_config() -> ml_collections.ConfigDict:
    """Every section but ``model``: seed, data (from gm_jax.data), optim and train."""
    from gm_jax.data.pipeline import data_defaults

    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.data = data_defaults()
    cfg.optim = optim_defaults()
    cfg.train = train_defaults()
    return cfg


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """Import a Python config file and call its ``get_config()``."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found; pass a path such as experiments/configs/vae.py")
    spec = importlib.util.spec_from_file_location(f"gm_jax_config_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"config file {path!r} is not a Python file; pass a .py file with get_config()")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"config file {path!r} has a syntax error at line {e.lineno}: {e.msg}") from None
    except Exception as e:  # any error raised while importing the user's file
        raise ConfigError(f"config file {path!r} fails to import ({type(e).__name__}: {_first_line(e)}); "
                          "fix the file") from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {path!r} has no get_config() function; define one returning a ConfigDict")
    try:
        cfg = module.get_config()
    except Exception as e:  # an error inside the user's get_config()
        raise ConfigError(f"get_config() in {path!r} raised {type(e).__name__}: {_first_line(e)}; fix the file"
                          ) from None
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path!r} must return an ml_collections.ConfigDict, "
                          f"got {type(cfg).__name__}")
    return cfg


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else "no message"


def _parse_value(text: str, current: Any, name: str) -> Any:
    """Parse ``text`` into the type of the field's current value."""
    try:
        if isinstance(current, bool):
            low = text.lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        if isinstance(current, (tuple, list)):
            value = ast.literal_eval(text)
            if isinstance(value, (int, float, str)):
                value = (value,)
            return type(current)(value)
        if current is None:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
    except (ValueError, SyntaxError):
        pass
    raise ConfigError(f"--config.{name} expects a {type(current).__name__}, got {text!r}")


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Apply ``--config.a.b=value`` overrides; unknown fields and wrong types raise a one-line ConfigError."""
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    for item in overrides:
        if not item.startswith("--config.") or "=" not in item:
            raise ConfigError(f"cannot read argument {item!r}; overrides look like --config.optim.learning_rate=3e-4")
        name, text = item[len("--config."):].split("=", 1)
        *parents, leaf = name.split(".")
        node = cfg
        for i, part in enumerate(parents):
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                where = ".".join(parents[:i]) or "config"
                raise ConfigError(f"unknown config field 'config.{name}'; sections of {where}: "
                                  f"{', '.join(sorted(k for k in node.keys()))}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"unknown config field 'config.{name}'; fields there: "
                              f"{', '.join(sorted(node.keys()))}")
        if isinstance(node[leaf], ml_collections.ConfigDict):
            raise ConfigError(f"config.{name} is a section; set one of its fields, e.g. --config.{name}.FIELD=...")
        node[leaf] = _parse_value(text, node[leaf], name)
    return cfg


def validate_config(cfg: ml_collections.ConfigDict) -> None:
    """Check the sections every run needs and the loop's own fields (families check their own)."""
    for section in ("data", "model", "optim", "train"):
        if section not in cfg:
            raise ConfigError(f"config has no '{section}' section; build it from gm_jax.train.config.base_config()")
    if "family" not in cfg.model:
        raise ConfigError("config.model.family is missing; set it to a family name such as 'vae'")
    t = cfg.train
    for field in ("num_steps", "steps_per_call", "log_every", "checkpoint_every", "keep_checkpoints"):
        if not isinstance(t[field], int) or t[field] < (0 if field == "num_steps" else 1):
            raise ConfigError(f"config.train.{field} must be a positive integer, got {t[field]!r}")
    for field, low in (("sample_every", 0), ("eval_every", 0), ("eval_batches", 0), ("eval_batch_size", 0),
                       ("num_samples", 1), ("num_devices", 0)):
        value = t.get(field, low)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"config.train.{field} must be an integer >= {low}, got {value!r}")
    check_launch(t)
    if cfg.data.batch_size < 1:
        raise ConfigError(f"config.data.batch_size must be >= 1, got {cfg.data.batch_size}")


def config_to_json(cfg: ml_collections.ConfigDict) -> str:
    """The resolved config as sorted, indented JSON (what WORKDIR/config.json holds)."""
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=list)


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """Inverse of :func:`config_to_json` (lists stay lists; families accept any sequence)."""
    return ml_collections.ConfigDict(json.loads(text))


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config of the run in ``workdir`` (its config.json); one line when missing or unreadable."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{workdir} has no {CONFIG_FILE}; train a model there first with "
                              "`gm-jax train CONFIG --workdir DIR`")
    try:
        with open(path) as f:
            config = config_from_json(f.read())
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} is not a valid gm_jax config ({type(e).__name__}); restore it from the "
                              "config file the run was trained with, or use a new --workdir") from None
    if not isinstance(config.get("model"), ml_collections.ConfigDict) or "family" not in config.model:
        raise CheckpointError(f"{path} is not a gm_jax run config (no model.family); use a work directory "
                              "written by `gm-jax train`")
    return config
