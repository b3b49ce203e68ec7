"""Rebuilding a shipped model: its family from the sidecar's config and data spec (no data needed), its
parameters from the verified msgpack file, and the fixed-batch check metric that ties the sidecar's numbers to
the weights and the code.

The family is built by the train layer's :func:`gm_jax.train.families.build_family`, as for a work directory
(:func:`gm_jax.train.workdir.open_run`); the parameter template is ``jax.eval_shape`` of ``family.init`` on a
zero batch of the recorded layout, so nothing is initialised and every stored leaf is checked against the
model's shape before use.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import serialization

from gm_jax.core import tokenizer
from gm_jax.core.errors import CheckpointError
from gm_jax.core.family import DataSpec, Family, FamilyInputs, TextSpec, Upstream
from gm_jax.core.rng import purpose_key, seed_key
from gm_jax.core.state import TrainState
from gm_jax.pretrained.gallery import paths, read_sidecar, read_weights
from gm_jax.train.checkpoint import model_mismatch
from gm_jax.train.config import config_from_json
from gm_jax.train.families import build_family, embedded_upstream

CHECK_PURPOSE = "pretrained_check"


def spec_to_json(spec: DataSpec) -> dict[str, Any]:
    """The fields of a :class:`DataSpec` (JSON types); a captioned model's :class:`TextSpec` under ``text``
    (its vocabulary as :func:`gm_jax.core.tokenizer.to_json` writes it)."""
    out: dict[str, Any] = {"shape": list(spec.shape), "num_classes": int(spec.num_classes),
                           "value_range": [float(v) for v in spec.value_range], "binary": bool(spec.binary),
                           "levels": int(spec.levels), "name": spec.name}
    if spec.text is not None:
        out["text"] = {"vocabulary": tokenizer.to_json(spec.text.vocabulary), "max_length": int(spec.text.max_length),
                       "bos_eos": bool(spec.text.bos_eos), "class_prompts": list(spec.text.class_prompts)}
    return out


def spec_from_json(data: dict[str, Any]) -> DataSpec:
    """The :class:`DataSpec` written by :func:`spec_to_json`."""
    text = None
    if data.get("text") is not None:
        t = data["text"]
        text = TextSpec(vocabulary=tokenizer.from_json(t["vocabulary"]), max_length=int(t["max_length"]),
                        bos_eos=bool(t["bos_eos"]), class_prompts=tuple(str(p) for p in t["class_prompts"]))
    return DataSpec(shape=tuple(int(v) for v in data["shape"]), num_classes=int(data["num_classes"]),
                    value_range=tuple(float(v) for v in data["value_range"]), binary=bool(data["binary"]),
                    levels=int(data["levels"]), name=str(data.get("name", "")), text=text)


def batch_spec_of(batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The layout of a batch: key -> shape of one example and dtype."""
    return {k: {"shape": list(np.shape(v)[1:]), "dtype": str(np.asarray(v).dtype)} for k, v in batch.items()}


def example_batch(batch_spec: dict[str, dict[str, Any]], batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Abstract arrays of a batch of ``batch_size`` with the recorded layout."""
    return {k: jax.ShapeDtypeStruct((batch_size, *v["shape"]), np.dtype(v["dtype"])) for k, v in batch_spec.items()}


def params_template(family: Family, batch_spec: dict[str, dict[str, Any]], batch_size: int) -> Any:
    """The abstract parameters (shapes and dtypes) of ``family``: ``eval_shape`` of its init, nothing computed."""
    batch = example_batch(batch_spec, batch_size)
    return jax.eval_shape(lambda b: family.init(seed_key(0), b).params, batch)


def cast_params(params: Any, dtype: str) -> Any:
    """Host copies of ``params`` with every floating leaf in ``dtype`` (other leaves unchanged)."""
    def cast(leaf: Any) -> np.ndarray:
        a = np.asarray(leaf)
        return a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a

    return jax.tree.map(cast, jax.device_get(params))


def encode_params(params: Any, dtype: str) -> bytes:
    """``msgpack_serialize`` of the state dict of ``params`` stored in ``dtype``."""
    return serialization.msgpack_serialize(serialization.to_state_dict(cast_params(params, dtype)))


def decode_params(blob: bytes, template: Any, where: str) -> Any:
    """Parameters of ``template``'s structure, shapes and dtypes from msgpack bytes; a tree that does not fit
    the model is one line naming the first mismatched leaf."""
    try:
        stored = serialization.msgpack_restore(blob)
        params = serialization.from_state_dict(template, stored)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{where} does not fit this model ({type(e).__name__}: {str(e)[:120]}); export the "
                              "model again with this gm_jax version") from None
    mismatch = model_mismatch(params, template)
    if mismatch is not None:
        raise CheckpointError(f"{where} does not fit this model ({mismatch}); export the model again with this "
                              "gm_jax version")
    return jax.tree.map(lambda p, t: jnp.asarray(p, dtype=t.dtype), params, template)


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A loaded model: its name, family, parameters (float32 where the model computes in float32), the run's
    config, data spec and sidecar."""

    name: str
    family: Family
    params: Any
    config: ml_collections.ConfigDict
    spec: DataSpec
    sidecar: dict[str, Any]


def load_model(name: str, weights_dir: str | os.PathLike | None = None,
               inputs: FamilyInputs | None = None) -> Pretrained:
    """Model ``name`` of the gallery (or of ``weights_dir``), its weights verified by size and sha256 first.
    ``inputs``: what the family may use beyond its config (e.g. eval batches for ``gm-jax eval``)."""
    blob, sidecar = read_weights(name, weights_dir)
    config = config_from_json(json.dumps(sidecar["config"]))
    spec = spec_from_json(sidecar["data_spec"])
    inputs = inputs or FamilyInputs()
    if sidecar.get("upstream"):
        inputs = dataclasses.replace(inputs, upstream=upstream_of(sidecar, blob, name))
    family = build_family(config, spec, inputs)
    template = params_template(family, sidecar["batch_spec"], int(config.data.batch_size))
    params = decode_params(blob, template, f"weights file {paths(name, weights_dir)[0]}")
    return Pretrained(name, family, params, config, spec, sidecar)


def upstream_of(sidecar: dict[str, Any], blob: bytes, name: str) -> dict[str, Upstream]:
    """The runs a shipped model builds on, rebuilt from its sidecar (their configs and steps) and its own
    stored parameters (where the family keeps theirs: :func:`gm_jax.train.families.embedded_upstream`)."""
    try:
        stored = serialization.msgpack_restore(blob)
        return {field: Upstream(config=entry["config"], step=int(entry["step"]), workdir=f"pretrained:{name}",
                                params=cast_params(embedded_upstream(sidecar["family"], field, stored), "float32"))
                for field, entry in sidecar["upstream"].items()}
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"the upstream runs of model {name} do not fit its weights ({type(e).__name__}: "
                              f"{str(e)[:120]}); export the model again with this gm_jax version") from None


def load(name: str, weights_dir: str | os.PathLike | None = None) -> tuple[Family, Any]:
    """``family, params = load("vae_fashion_mnist_small")``: a shipped model, ready for ``family.sample(params,
    key, num)`` and ``family.evaluate(params, batch, key)``."""
    model = load_model(name, weights_dir)
    return model.family, model.params


def check_metric(family: Family, params: Any, images: dict[str, np.ndarray], seed: int, partitionable: bool,
                 metric: str | None = None) -> dict[str, float]:
    """``family.evaluate`` of one batch (``images``: the first N eval images) keyed by
    ``purpose_key(seed_key(seed), "pretrained_check")`` under the given threefry mode (the random streams
    differ between modes, so the recorded mode is used), as floats. ``metric``: compile and report that one
    only (the computations the others alone need, e.g. a likelihood ODE, are dead code then)."""
    def one(p: Any, batch: dict[str, jax.Array], key: jax.Array) -> dict[str, jax.Array]:
        return {metric: family.evaluate(p, batch, key)[metric]}

    with jax.threefry_partitionable(partitionable):
        key = purpose_key(seed_key(seed), CHECK_PURPOSE)
        fn = jax.jit(family.evaluate if metric is None else one)
        out = fn(params, {k: jnp.asarray(v) for k, v in images.items()}, key)
        return {k: float(v) for k, v in out.items()}


def eval_pipeline(config: ml_collections.ConfigDict) -> Any:
    """The data pipeline of the model's config (for evaluation; the data must be present)."""
    from gm_jax.data.pipeline import make_pipeline

    return make_pipeline(config.data, config.seed)


def recompute_check(name: str, weights_dir: str | os.PathLike | None = None) -> tuple[float, float]:
    """``(recorded, recomputed)`` value of the sidecar's check metric, recomputed from the shipped weights on
    the same fixed batch (stored in the sidecar when small, else the first eval examples), key and threefry
    mode."""
    model = load_model(name, weights_dir)
    check = model.sidecar["check"]
    if "batch" in check:  # stored with the check (small batches)
        layout = model.sidecar["batch_spec"]
        images = {k: np.asarray(v, np.dtype(layout[k]["dtype"])) for k, v in check["batch"].items()}
    else:
        images = eval_pipeline(model.config).eval_images(int(check["num_images"]))
    values = check_metric(model.family, model.params, images, int(check["seed"]),
                          bool(check["threefry_partitionable"]), check["metric"])
    return float(check["value"]), values[check["metric"]]


def pretrained_run(name: str, weights_dir: str | os.PathLike | None = None) -> tuple[Any, TrainState]:
    """A :class:`gm_jax.train.workdir.Run` without a work directory (no checkpointer) and a state holding the
    shipped parameters, for ``gm-jax eval --pretrained``: the model's data pipeline and mesh, the family built
    with the eval batches."""
    from gm_jax.train.workdir import Run, make_mesh_for

    pipeline = eval_pipeline(config_from_json(json.dumps(read_sidecar(name, weights_dir)["config"])))
    model = load_model(name, weights_dir, FamilyInputs(eval_batches=pipeline.eval_batches))
    mesh = make_mesh_for(model.config)
    step = int(model.sidecar.get("train_steps") or 0)
    state = TrainState(step=jnp.asarray(step, jnp.int32), rng=seed_key(model.config.seed), params=model.params,
                       opt_state=(), ema_params=None)
    return Run(model.config, model.family, pipeline, mesh, None, ""), state


__all__ = ["Pretrained", "batch_spec_of", "cast_params", "check_metric", "decode_params", "encode_params",
           "eval_pipeline", "example_batch", "load", "load_model", "params_template", "pretrained_run",
           "recompute_check", "spec_from_json", "spec_to_json", "upstream_of"]
