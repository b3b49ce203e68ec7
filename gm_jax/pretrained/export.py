"""``gm-jax pretrained export``: a finished run's sampling parameters as a gallery model (msgpack + sidecar).

The parameters are the run's ``TrainState.sampling_params()`` — the EMA parameters when the run keeps them
(what ``gm-jax sample`` and ``gm-jax eval`` use), else the trained ones — stored in float32 or float16. Every
number in the sidecar is measured on the weights as stored: the bytes are written, decoded back into the
model's template, and evaluated (``family.evaluate`` over the eval split, ``train.loop.evaluate``); for float16
storage the float32 numbers are recorded next to them (``metrics.float32``) so the loss of precision is stated.
The ``check`` entry is ``family.evaluate`` on the first N eval images with a fixed key — the number a test
recomputes from the shipped weights (:func:`gm_jax.pretrained.loading.recompute_check`).

Nothing is written until the run has loaded and every number exists; the two files are then written
atomically, the sidecar last.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

import jax
import numpy as np

import gm_jax
from gm_jax.core.errors import ConfigError, TrainingDiverged, require
from gm_jax.core.state import TrainState
from gm_jax.pretrained import loading as ld
from gm_jax.pretrained.gallery import SIDECAR_FORMAT, WEIGHTS_DIR, check_name, paths
from gm_jax.train.config import config_to_json
from gm_jax.train.families import FAMILIES, upstream_fields
from gm_jax.train.workdir import Run, check_writable, load_upstream, load_workdir, read_config

DTYPES = ("float32", "float16")
# the metric a sidecar leads with: the first of these the family's evaluate reports (else its first metric)
HEADLINE_PREFERENCE = ("bits_per_dim", "nll", "nll_iwae", "neg_elbo", "fid", "loss", "d_loss")
CHECK_SEED = 0
CHECK_RTOL = 1e-4
CHECK_BATCH_INLINE = 4096  # numbers of a check batch stored in the sidecar itself


def check_request(workdir: str, name: str, dtype: str, out_dir: str, num_batches: int, check_num: int,
                  fid_num: int = 0) -> None:
    """Everything about an export request that can be checked before a model is loaded (nothing written)."""
    check_name(name)
    require(fid_num >= 0, f"--fid_num must be >= 0 (0: no sample FID), got {fid_num}")
    require(dtype in DTYPES, f"--dtype must be one of: {', '.join(DTYPES)}, got {dtype!r}")
    require(num_batches >= 0, f"--num_batches must be >= 0 (0: the whole eval split), got {num_batches}")
    require(check_num >= 1, f"--check_num must be >= 1, got {check_num}")
    config = read_config(workdir)
    kept = FAMILIES[config.model.family].embedded
    missing = [field for field in upstream_fields(config) if field not in kept]
    require(not missing, f"the run in {workdir} builds on other runs ({', '.join(missing)}) whose parameters "
            "it does not keep in its own; export a self-contained run")
    check_writable(out_dir, "output folder", "--out")


def _headline(metrics: dict[str, float], wanted: str | None) -> str:
    """The full name (``eval/...`` or ``samples/...``) of the metric the sidecar leads with."""
    names = {k.split("/", 1)[1]: k for k in metrics}
    if wanted:
        require(wanted in names, f"--headline {wanted!r} is not a metric of this model; choose one of: "
                f"{', '.join(sorted(names))}")
        return names[wanted]
    return names[next((n for n in HEADLINE_PREFERENCE if n in names), sorted(names)[0])]


def _sample_fid(run: Run, state: TrainState, params: Any, num: int) -> dict[str, Any]:
    """FID of ``num`` samples of the stored weights (the family's default sampling, seed 0) against the first
    ``num`` eval images, in the shipped feature network of the data (:func:`gm_jax.train.quality.sample_quality`)."""
    from gm_jax.train.quality import sample_quality

    report = sample_quality(run, state.replace(params=params, ema_params=None), ["fid"], num)
    return {"value": float(report["metrics"]["fid"]["value"]), "num_samples": num,
            "extractor": report["extractor"]["name"], "seed": 0}


def _require_metric(run: Run, params: Any, wanted: str) -> None:
    """``wanted`` must be a metric of the family's ``evaluate`` (its output names, from shapes only)."""
    images = {k: jax.numpy.asarray(v) for k, v in run.pipeline.eval_images(2).items()}
    names = jax.eval_shape(run.family.evaluate, params, images, jax.random.key(0))
    require(wanted in names, f"--check_metric {wanted!r} is not a metric of this model; choose one of: "
            f"{', '.join(sorted(names))}")


def _evaluate(run: Run, state: TrainState, params: Any, num_batches: int) -> dict[str, float]:
    from gm_jax.train.loop import check_finite_metrics, evaluate

    metrics = evaluate(run, state.replace(params=params, ema_params=None), num_batches)
    check_finite_metrics(metrics, int(state.step))
    return metrics


def _stored_params(run: Run, state: TrainState, dtype: str) -> tuple[bytes, Any, dict]:
    """The msgpack bytes of the sampling parameters in ``dtype``, those bytes decoded back into the model's
    template (what a user loads), and the batch layout of the template."""
    params = state.sampling_params()
    host = ld.cast_params(params, dtype)
    if not all(np.all(np.isfinite(a)) for a in jax.tree.leaves(host) if np.issubdtype(a.dtype, np.floating)):
        raise TrainingDiverged(f"the parameters are not finite in {dtype} (a value overflows); export with "
                               "--dtype float32")
    blob = ld.encode_params(params, dtype)
    batch_spec = ld.batch_spec_of(run.pipeline.batch(0))
    template = ld.params_template(run.family, batch_spec, int(run.config.data.batch_size))
    return blob, ld.decode_params(blob, template, "the exported weights"), batch_spec


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _upstream_entries(config: Any) -> dict[str, dict[str, Any]]:
    """The runs a model builds on, for its sidecar: ``{field: {"config", "step", "workdir"}}`` (their
    parameters travel inside the model's own; :func:`gm_jax.train.families.embedded_upstream`)."""
    return {field: {"config": json.loads(json.dumps(dict(up.config))), "step": int(up.step),
                    "workdir": up.workdir} for field, up in load_upstream(config).items()}


def _sidecar(run: Run, state: TrainState, name: str, dtype: str, blob: bytes, batch_spec: dict,
             metrics: dict[str, float], samples: dict[str, float], headline: str, check: dict[str, Any],
             provenance: dict[str, Any]) -> dict:
    """The JSON sidecar of an export (see :mod:`gm_jax.pretrained.gallery`); ``samples``: sample-quality
    metrics (``samples/fid``), empty when not measured."""
    cfg = run.config
    note = ("float16 storage; every metric here is computed with the float16 weights (cast to float32 to "
            "compute); the float32 weights' are under metrics.float32") if dtype == "float16" else \
        "float32 storage, bit-identical to the run's parameters"
    return {
        "format": SIDECAR_FORMAT, "name": name, "family": cfg.model.family, "data": cfg.data.name,
        "config": json.loads(config_to_json(cfg)), "data_spec": ld.spec_to_json(run.pipeline.spec),
        "upstream": _upstream_entries(cfg),
        "batch_spec": batch_spec, "train_steps": int(state.step), **provenance,
        "params": "ema_params" if state.ema_params is not None else "params",
        "num_params": int(sum(np.size(a) for a in jax.tree.leaves(state.params))), "storage_dtype": dtype,
        "storage_note": note,
        "metrics": {"headline": {"name": headline, "value": (metrics | samples)[headline]},
                    "eval": metrics, "eval_split": cfg.data.eval_split, "eval_batch_size": int(cfg.data.batch_size)},
        "check": check, "gm_jax_version": gm_jax.__version__, "jax_version": jax.__version__,
        "sha256": hashlib.sha256(blob).hexdigest(), "size_bytes": len(blob)}


def _check_entry(run: Run, params: Any, headline: str, num: int, wanted: str | None = None) -> dict[str, Any]:
    """The fixed-batch check metric: ``family.evaluate`` of the first ``num`` eval images, its value, and
    everything needed to recompute it (seed, threefry mode, tolerance)."""
    images = run.pipeline.eval_images(num)
    partitionable = bool(jax.config.jax_threefry_partitionable)
    values = ld.check_metric(run.family, params, images, CHECK_SEED, partitionable)
    name = headline.split("/", 1)[1]
    fallback = next((n for n in HEADLINE_PREFERENCE if n in values), sorted(values)[0])
    metric = name if headline.startswith("eval/") and name in values else fallback
    if wanted:
        metric = wanted  # its name was checked before the evaluation (_require_metric)
    n, split = int(len(images["x"])), run.config.data.eval_split
    entry = {"metric": metric, "value": values[metric], "num_images": n, "seed": CHECK_SEED,
             "threefry_partitionable": partitionable, "rtol": CHECK_RTOL,
             "what": f"family.evaluate on the first {n} examples of the {split} split, key "
                     f"purpose_key(seed_key({CHECK_SEED}), '{ld.CHECK_PURPOSE}')"}
    if sum(np.size(v) for v in images.values()) <= CHECK_BATCH_INLINE:
        # a small batch (2-D toy points, whose split is drawn from JAX's PRNG and so depends on its threefry
        # mode) is stored with the check, so recomputing it needs no data at all
        entry["batch"] = {k: np.asarray(v).tolist() for k, v in images.items()}
    return entry


def export_run(workdir: str, name: str, dtype: str = "float32", out_dir: str | os.PathLike | None = None, *,
               train_command: str | None = None, train_cpu_seconds: float | None = None, num_batches: int = 0,
               check_num: int = 128, headline: str | None = None, export_command: str | None = None,
               fid_num: int = 0, check_metric: str | None = None) -> dict[str, Any]:
    """Export the finished run in ``workdir`` as gallery model ``name`` into ``out_dir`` (default the package's
    ``gm_jax/pretrained/weights``); returns the sidecar. ``num_batches``: eval batches for the metrics (0: the
    whole eval split); ``check_num``: images of the check metric; ``train_command``/``train_cpu_seconds``: how
    the run was trained, as measured by the caller (recorded as given); ``fid_num`` > 0: also the FID of that
    many samples against as many eval images (``metrics.samples.fid``; the headline when the family reports no
    likelihood); ``check_metric``: the eval metric of the check (default: the headline when it is one) — a
    cheap one where the headline is costly to recompute in a test (a likelihood ODE)."""
    from gm_jax.train.loop import is_complete

    out = pathlib.Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    check_request(workdir, name, dtype, str(out), num_batches, check_num, fid_num)
    run, state = load_workdir(workdir)
    try:
        if run.family.evaluate is None:
            raise ConfigError(f"the model in {workdir} has no evaluation metric (its family defines no evaluate), "
                              "so no check number could be recomputed from its weights; it cannot be exported")
        step = int(state.step)
        if not is_complete(workdir, step, run.config.train.num_steps):
            raise ConfigError(f"the run in {workdir} has not finished (step {step} of {run.config.train.num_steps}, "
                              "or no final.json); finish it with `gm-jax train` first")
        blob, loaded, batch_spec = _stored_params(run, state, dtype)
        if check_metric:  # a wrong name fails before the (possibly long) evaluation
            _require_metric(run, loaded, check_metric)
        metrics = _evaluate(run, state, loaded, num_batches)
        fid = _sample_fid(run, state, loaded, fid_num) if fid_num else None
        samples = {"samples/fid": fid["value"]} if fid else {}
        main = _headline(metrics | samples, headline)
        provenance = {"train_cpu_seconds": train_cpu_seconds, "train_command": train_command,
                      "export_command": export_command}
        sidecar = _sidecar(run, state, name, dtype, blob, batch_spec, metrics, samples, main,
                           _check_entry(run, loaded, main, check_num, check_metric), provenance)
        if fid:
            sidecar["metrics"]["samples"] = {"fid": fid}
        sidecar["metrics"]["eval_batches"] = num_batches or "all"
        if dtype == "float16":
            sidecar["metrics"]["float32"] = _evaluate(run, state, state.sampling_params(), num_batches)
    finally:
        run.checkpointer.close()
    msgpack_path, json_path = paths(name, out)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(msgpack_path, blob)
    _write_atomic(json_path, (json.dumps(sidecar, indent=2) + "\n").encode())
    return sidecar


__all__ = ["CHECK_RTOL", "DTYPES", "HEADLINE_PREFERENCE", "check_request", "export_run"]
