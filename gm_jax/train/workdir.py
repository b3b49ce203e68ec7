"""The one home of run-directory I/O: reading and writing ``config.json``, opening a run (pipeline, family,
mesh, checkpointer), restoring its verified state, and loading the runs a family builds on.

Rules every command follows, so that a failed command leaves a work directory exactly as it was:

* everything that can be checked is checked before anything is written (configs are compared, the
  directory's writability is probed without creating files in it);
* ``config.json`` is written only by ``gm-jax train``, once its request has been validated, atomically;
  a run with captions (``data.captions``) also gets ``vocabulary.json`` and ``caption_thresholds.json``
  (:func:`write_caption_files`), which :func:`open_run` checks against the pipeline when they exist;
* checkpoints are verified against their manifests before use (:mod:`gm_jax.train.checkpoint`); a corrupt
  step is set aside and the newest good one used, with one line saying so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np

from gm_jax.core.errors import CheckpointError, ConfigError, TrainingDiverged
from gm_jax.core.family import Family, FamilyInputs, Upstream
from gm_jax.core.rng import purpose_key, seed_key
from gm_jax.core.state import TrainState
from gm_jax.core.tokenizer import from_json, to_json
from gm_jax.data import captions
from gm_jax.data.pipeline import Pipeline, make_pipeline
from gm_jax.train import sharding as shd
from gm_jax.train.checkpoint import Checkpointer, abstract_like
from gm_jax.train.config import CONFIG_FILE, config_to_json, read_config, validate_config
from gm_jax.train.families import build_family, upstream_fields
from gm_jax.train.launch import LAUNCH_FIELDS, join_distributed

VOCABULARY_FILE = "vocabulary.json"
THRESHOLDS_FILE = "caption_thresholds.json"
# Fields that may differ between a run and its resumption (everything else must match config.json);
# the launch fields (train.distributed, its coordinator, process count and id, timeouts) say how the run is
# launched, not what it computes: a checkpoint of a multi-process run
# resumes in one process and back (the state is replicated; orbax restores it onto any mesh).
RESUMABLE_CHANGES = ("train.num_steps", "train.progress", "train.log_every", "train.sample_every",
                     "train.eval_every") + tuple(f"train.{f}" for f in LAUNCH_FIELDS)


def check_writable(path: str, what: str = "work directory", flag: str = "--workdir") -> None:
    """Raise a one-line CheckpointError unless ``path`` (a folder, existing or not) could be written: the
    nearest existing ancestor must be a writable directory. Creates nothing."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    why = "not a directory" if not os.path.isdir(probe) else None
    if why is None and not os.access(probe, os.W_OK | os.X_OK):
        why = "permission denied"
    if why is None:  # root passes os.access everywhere; a read-only file system still refuses a real write
        try:
            fd, tmp = tempfile.mkstemp(prefix=".gm_jax_write_test_", dir=probe)
            os.close(fd)
            os.remove(tmp)
        except OSError as e:
            why = e.strerror or type(e).__name__
    if why is not None:
        raise CheckpointError(f"{what} {path} is not writable ({probe}: {why}); choose another {flag}")


# fields added after runs were saved without them: absent from an old config.json means this value
ADDED_FIELD_DEFAULTS = {"data.captions": False, "data.caption_attributes": True, "data.caption_max_length": 0,
                        "data.caption_bos_eos": False}


def _diff_configs(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        name = f"{prefix}{k}"
        a, b = old.get(k, ADDED_FIELD_DEFAULTS.get(name)), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff_configs(a, b, name + ".")
        elif a != b and name not in RESUMABLE_CHANGES:
            out.append(name)
    return out


def check_same_run(workdir: str, config: ml_collections.ConfigDict) -> None:
    """When ``workdir`` already holds a run, ``config`` must be that run's (up to RESUMABLE_CHANGES)."""
    if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
        return
    old = read_config(workdir).to_dict()
    diff = _diff_configs(json.loads(config_to_json(ml_collections.ConfigDict(old))),
                         json.loads(config_to_json(config)))
    if diff:
        raise CheckpointError(f"{workdir} holds a run with a different config ({', '.join(diff[:4])}); "
                              "resume it with the same config or use a new --workdir")


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Write ``WORKDIR/config.json`` atomically (after the request has been validated)."""
    _write_text(os.path.join(workdir, CONFIG_FILE), config_to_json(config))


def _write_text(path: str, text: str) -> None:
    """``text`` at ``path``, atomically (a temporary file renamed over it); left alone when it already says
    the same."""
    if os.path.isfile(path):
        with open(path) as f:
            if f.read() == text:
                return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _write_json(path: str, data: Any) -> None:
    """``data`` as sorted, indented JSON at ``path`` (:func:`_write_text`)."""
    _write_text(path, json.dumps(data, indent=2, sort_keys=True))


def write_caption_files(workdir: str, pipeline: Pipeline) -> None:
    """Beside config.json of a captioned run: ``vocabulary.json`` (:func:`gm_jax.core.tokenizer.to_json`)
    and, when attributes are measured, ``caption_thresholds.json`` (:func:`captions.thresholds_to_json`).
    Nothing for a run without captions. Call it where config.json is written (process 0 only)."""
    if pipeline.spec.text is None:
        return
    _write_json(os.path.join(workdir, VOCABULARY_FILE), to_json(pipeline.spec.text.vocabulary))
    if pipeline.caption_thresholds is not None:
        _write_json(os.path.join(workdir, THRESHOLDS_FILE), captions.thresholds_to_json(pipeline.caption_thresholds))


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}); restore it or retrain in a new "
                              "--workdir") from None


def check_caption_files(workdir: str, pipeline: Pipeline) -> None:
    """The saved vocabulary (and attribute cuts) of a captioned run must equal the pipeline's, so that token
    ids mean the words the model was trained on. A missing file (an older run) is accepted; an unreadable
    or differing one is a one-line CheckpointError."""
    text = pipeline.spec.text
    if text is None:
        return
    name = pipeline.name
    path = os.path.join(workdir, VOCABULARY_FILE)
    if os.path.isfile(path):
        try:
            saved = from_json(_read_text(path))
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        if saved != text.vocabulary:
            new = sorted(set(text.vocabulary.words) - set(saved.words))
            gone = sorted(set(saved.words) - set(text.vocabulary.words))
            raise CheckpointError(f"{path} differs from the captions of data.name={name!r} ({len(saved)} saved words, "
                                  f"{len(text.vocabulary)} now; new {new[:3]}, gone {gone[:3]}): the caption code "
                                  "changed; retrain in a new --workdir, or use the gm_jax version the run was "
                                  "trained with")
    path = os.path.join(workdir, THRESHOLDS_FILE)
    if os.path.isfile(path) and pipeline.caption_thresholds is not None:
        try:
            saved = captions.thresholds_from_json(json.loads(_read_text(path)))
        except ValueError:
            raise CheckpointError(f"{path} is not JSON; restore it or retrain in a new --workdir") from None
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        now = pipeline.caption_thresholds
        same = all(saved[k].shape == now[k].shape and np.allclose(saved[k], now[k], rtol=1e-9, atol=1e-12)
                   for k in ("brightness", "size")) and saved["foreground_threshold"] == now["foreground_threshold"]
        if not same:
            raise CheckpointError(f"{path} differs from the attribute cuts fitted on the training images of "
                                  f"data.name={name!r}: the training data or the caption code changed; retrain in "
                                  "a new --workdir, or use the data and gm_jax version the run was trained with")


@dataclasses.dataclass
class Run:
    """Everything a command needs about one work directory."""

    config: ml_collections.ConfigDict
    family: Family
    pipeline: Pipeline
    mesh: jax.sharding.Mesh
    checkpointer: Checkpointer
    workdir: str = ""


def make_mesh_for(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
    """The data-parallel mesh of ``config.train.num_devices`` devices (0: all)."""
    n_dev = config.train.get("num_devices", 0)
    if n_dev < 0 or n_dev > jax.device_count():
        raise ConfigError(f"config.train.num_devices={n_dev} but {jax.device_count()} devices exist; "
                          "use 0 (all) or a number up to that")
    mesh = shd.make_mesh(jax.devices()[:n_dev] if n_dev else None)
    shd.check_batch_size(config.data.batch_size, mesh, "data.batch_size")
    eval_bs = config.train.get("eval_batch_size", 0)
    if eval_bs:
        shd.check_batch_size(eval_bs, mesh, "train.eval_batch_size")
    return mesh


def load_upstream(config: ml_collections.ConfigDict) -> dict[str, Upstream]:
    """The runs ``config`` builds on (registry ``upstream`` fields), loaded and verified like any run."""
    out = {}
    for field, workdir in upstream_fields(config).items():
        if not os.path.isdir(workdir):
            raise CheckpointError(f"config.{field}={workdir!r} is not a directory; point it at a trained run")
        try:
            run, state = load_workdir(workdir)
        except CheckpointError as e:
            raise CheckpointError(f"config.{field}={workdir!r}: {e}") from None
        params = jax.tree.map(np.asarray, jax.device_get(state.sampling_params()))
        out[field] = Upstream(config=run.config.to_dict(), params=params, step=int(state.step), workdir=workdir)
    return out


def open_run(config: ml_collections.ConfigDict, workdir: str) -> Run:
    """Build the pipeline, family, mesh and checkpointer of a run (no state yet; nothing written)."""
    join_distributed(config.train)  # first: it must run before anything starts the XLA backend
    validate_config(config)
    mesh = make_mesh_for(config)
    pipeline = make_pipeline(config.data, config.seed, jax.process_index(), jax.process_count())
    check_caption_files(workdir, pipeline)
    inputs = FamilyInputs(eval_batches=pipeline.eval_batches, upstream=load_upstream(config))
    family = build_family(config, pipeline.spec, inputs)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.train.keep_checkpoints)
    return Run(config, family, pipeline, mesh, ckpt, os.path.abspath(workdir))


def init_state(family: Family, seed: int, example_batch: dict, mesh: jax.sharding.Mesh) -> TrainState:
    """``family.init`` compiled with a replicated result; ``example_batch`` is a global (sharded) batch."""
    root = seed_key(seed)
    init = jax.jit(lambda b: family.init(purpose_key(root, "init"), b).replace(rng=root),
                   out_shardings=shd.replicated(mesh))
    return init(example_batch)


def restore_or_init(run: Run, verb: str = "using") -> TrainState:
    """The newest checkpoint of the run that verifies, or a fresh state when there is none. A step that
    fails verification is moved aside with one line (``checkpoint 300 is corrupt (...); moved to ...;
    <verb> 250``)."""
    example = shd.to_global(run.pipeline.batch(0), run.mesh)
    if run.checkpointer.latest_step() is None:
        return init_state(run.family, run.config.seed, example, run.mesh)
    abstract = jax.eval_shape(lambda b: run.family.init(seed_key(0), b).replace(rng=seed_key(0)), example)
    return run.checkpointer.restore(abstract_like(abstract, shd.replicated(run.mesh)), verb=verb)


def load_workdir(workdir: str) -> tuple[Run, TrainState]:
    """Open a trained run from its work directory (config.json + newest verified checkpoint)."""
    run = open_run(read_config(workdir), workdir)
    if run.checkpointer.latest_step() is None:
        raise CheckpointError(f"{workdir} has no checkpoint; train first with `gm-jax train CONFIG --workdir DIR`")
    return run, restore_or_init(run)


def check_finite_array(name: str, x: Any, where: str) -> None:
    """Raise TrainingDiverged when ``x`` holds NaN or inf (samples, evaluation metrics)."""
    a = np.asarray(x, np.float64)
    if not np.all(np.isfinite(a)):
        frac = float(np.mean(~np.isfinite(a)))
        raise TrainingDiverged(f"{name} {where} is not finite ({frac:.0%} NaN/inf); the model's parameters are "
                               "broken: retrain from an earlier checkpoint with a lower optim.learning_rate")


def draw_samples(family: Family, params: Any, seed: int, num: int, **options: Any) -> tuple[np.ndarray, dict]:
    """``family.sample`` keyed by ``purpose_key(seed_key(seed), "sample")``. It is called from the host: a
    family compiles its own chain, with run-time numbers (steps, η, guidance) as arrays. Non-finite samples
    raise TrainingDiverged (never written)."""
    if not family.can_sample:
        raise ConfigError(f"family {family.name!r} cannot sample")
    x, info = family.sample(params, purpose_key(seed_key(seed), "sample"), num, **options)
    x = np.asarray(x)
    check_finite_array("samples", x, f"of family {family.name!r}")
    return x, {k: np.asarray(v).tolist() for k, v in info.items()}


__all__ = ["CONFIG_FILE", "RESUMABLE_CHANGES", "THRESHOLDS_FILE", "VOCABULARY_FILE", "Run", "check_caption_files",
           "check_finite_array", "check_same_run", "check_writable", "draw_samples", "init_state", "load_upstream",
           "load_workdir", "make_mesh_for", "open_run", "read_config", "restore_or_init", "write_caption_files",
           "write_config"]
