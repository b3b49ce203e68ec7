"""The training loop. It knows only the family protocol (gm_jax.core.Family): it shards each batch over a
``jax.sharding`` mesh, runs the jit-compiled step with the state donated (optionally k steps fused with
``lax.scan``), logs, writes sample grids, checkpoints with orbax and resumes from the work directory.

A resumed run ends bit-identical to an uninterrupted one: the batch of step s is a pure function of
(seed, s), the step's key is ``fold_in(root, s)``, and the checkpoint holds the whole state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from gm_jax.core.errors import CheckpointError, ConfigError, TrainingDiverged
from gm_jax.core.family import Family
from gm_jax.core.rng import purpose_key, seed_key, step_key
from gm_jax.core.state import TrainState
from gm_jax.data.pipeline import Pipeline, make_pipeline
from gm_jax.train import sharding as shd
from gm_jax.train.checkpoint import Checkpointer, abstract_like
from gm_jax.train.config import config_from_json, config_to_json, validate_config
from gm_jax.train.families import build_family
from gm_jax.train.images import save_loss_curve, save_samples
from gm_jax.train.logging import MetricsLog, Progress, read_metrics

# Fields that may differ between a run and its resumption (everything else must match config.json).
RESUMABLE_CHANGES = ("train.num_steps", "train.progress", "train.log_every", "train.sample_every",
                     "train.eval_every")


def make_train_step(family: Family, mesh: jax.sharding.Mesh, steps_per_call: int = 1,
                    unroll: bool | int | None = None) -> Callable:
    """Compile ``family.train_step`` for the mesh: state replicated and donated, batch sharded on its batch
    axis. With ``steps_per_call = k > 1`` the function takes batches stacked ``[k, B, ...]`` and runs k
    steps in one ``lax.scan``; metrics come back stacked ``[k]`` either way.

    ``unroll``: the scan's unroll factor; ``None`` unrolls fully on CPU and not elsewhere. XLA:CPU (jax 0.10)
    does not canonicalize the weight-gradient convolutions inside a while loop's body (they keep
    ``dim_labels=f01b_i01o->01bf`` and miss the YNNPACK fusion), which made k rolled steps of a conv net
    ~10x slower than k single calls; unrolled, the body is straight-line code and compiles like one step."""

    def one_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        return family.train_step(state, batch, step_key(state.rng, state.step))

    if steps_per_call == 1:
        def fn(state, batch):
            state, metrics = one_step(state, batch)
            return state, jax.tree.map(lambda m: m[None], metrics)
        lead = 0
    else:
        if unroll is None:
            unroll = mesh.devices.flat[0].platform == "cpu"

        def fn(state, batches):
            return jax.lax.scan(one_step, state, batches, unroll=unroll)
        lead = 1
    return jax.jit(fn, in_shardings=(shd.replicated(mesh), shd.batch_sharding(mesh, lead)),
                   out_shardings=(shd.replicated(mesh), shd.replicated(mesh)), donate_argnums=0)


def init_state(family: Family, seed: int, example_batch: dict, mesh: jax.sharding.Mesh) -> TrainState:
    """``family.init`` compiled with a replicated result; ``example_batch`` is a global (sharded) batch."""
    root = seed_key(seed)
    init = jax.jit(lambda b: family.init(purpose_key(root, "init"), b).replace(rng=root),
                   out_shardings=shd.replicated(mesh))
    return init(example_batch)


def _check_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise CheckpointError(f"work directory {workdir} is not writable ({e.strerror}); "
                              "choose another --workdir") from None


def _diff_configs(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        name = f"{prefix}{k}"
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff_configs(a, b, name + ".")
        elif a != b and name not in RESUMABLE_CHANGES:
            out.append(name)
    return out


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    path = os.path.join(workdir, "config.json")
    text = config_to_json(config)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        diff = _diff_configs(old, json.loads(text))
        if diff:
            raise CheckpointError(f"{workdir} holds a run with a different config ({', '.join(diff[:4])}); "
                                  "resume it with the same config or use a new --workdir")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclasses.dataclass
class Run:
    """Everything a command needs about one work directory."""

    config: ml_collections.ConfigDict
    family: Family
    pipeline: Pipeline
    mesh: jax.sharding.Mesh
    checkpointer: Checkpointer


def open_run(config: ml_collections.ConfigDict, workdir: str) -> Run:
    """Build the pipeline, family, mesh and checkpointer of a run (no state yet)."""
    validate_config(config)
    if config.train.get("distributed", False) and jax.process_count() == 1:
        jax.distributed.initialize()
    n_dev = config.train.get("num_devices", 0)
    if n_dev < 0 or n_dev > jax.device_count():
        raise ConfigError(f"config.train.num_devices={n_dev} but {jax.device_count()} devices exist; "
                          "use 0 (all) or a number up to that")
    mesh = shd.make_mesh(jax.devices()[:n_dev] if n_dev else None)
    shd.check_batch_size(config.data.batch_size, mesh)
    pipeline = make_pipeline(config.data, config.seed, jax.process_index(), jax.process_count())
    family = build_family(config, pipeline.spec, eval_batches=pipeline.eval_batches)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.train.keep_checkpoints)
    return Run(config, family, pipeline, mesh, ckpt)


def restore_or_init(run: Run) -> TrainState:
    """The latest checkpoint of the run, or a fresh state when there is none."""
    example = shd.to_global(run.pipeline.batch(0), run.mesh)
    if run.checkpointer.latest_step() is None:
        return init_state(run.family, run.config.seed, example, run.mesh)
    abstract = jax.eval_shape(lambda b: run.family.init(seed_key(0), b).replace(rng=seed_key(0)), example)
    return run.checkpointer.restore(abstract_like(abstract, shd.replicated(run.mesh)))


def load_workdir(workdir: str) -> tuple[Run, TrainState]:
    """Open a trained run from its work directory (config.json + latest checkpoint)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{workdir} has no config.json; train a model there first with "
                              "`gm-jax train CONFIG --workdir DIR`")
    with open(path) as f:
        config = config_from_json(f.read())
    run = open_run(config, workdir)
    if run.checkpointer.latest_step() is None:
        raise CheckpointError(f"{workdir} has no checkpoint; train first with `gm-jax train CONFIG --workdir DIR`")
    return run, restore_or_init(run)


def draw_samples(family: Family, params: Any, seed: int, num: int, **kwargs: Any) -> tuple[np.ndarray, dict]:
    """``family.sample`` keyed by ``purpose_key(seed_key(seed), "sample")``. It is called from the host: a
    family compiles its own chain, with run-time numbers (steps, η, guidance) as arrays."""
    if family.sample is None:
        raise CheckpointError(f"family {family.name!r} cannot sample")
    x, info = family.sample(params, purpose_key(seed_key(seed), "sample"), num, **kwargs)
    return np.asarray(x), {k: np.asarray(v).tolist() for k, v in info.items()}


def evaluate(run: Run, state: TrainState, num_batches: int) -> dict[str, float]:
    """Mean of ``family.evaluate`` over the first ``num_batches`` full eval batches (0: all; a last partial
    batch is left out). Each process evaluates its slice of every global batch."""
    if run.family.evaluate is None:
        return {}
    fn = jax.jit(run.family.evaluate, in_shardings=(shd.replicated(run.mesh), shd.batch_sharding(run.mesh),
                                                    shd.replicated(run.mesh)))
    key = purpose_key(state.rng, "eval")
    bs = run.config.train.get("eval_batch_size", 0) or run.config.data.batch_size
    shd.check_batch_size(bs, run.mesh)
    totals: dict[str, float] = {}
    count = 0
    per_process, first = bs // jax.process_count(), jax.process_index() * (bs // jax.process_count())
    for i, batch in enumerate(run.pipeline.eval_batches(bs)):
        if (num_batches and i >= num_batches) or len(batch["x"]) != bs:
            break  # full batches only: one compiled shape, evenly sharded
        local = {k: v[first:first + per_process] for k, v in batch.items()}
        metrics = fn(state.sampling_params(), shd.to_global(local, run.mesh), jax.random.fold_in(key, i))
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        count += 1
    return {f"eval/{k}": v / max(count, 1) for k, v in totals.items()}


def _main_metric(metrics: dict) -> str:
    """The metric shown in the progress bar: ``loss``, else the first metric whose name holds 'loss'."""
    if "loss" in metrics:
        return "loss"
    return next((k for k in sorted(metrics) if "loss" in k), sorted(metrics)[0])


def _check_finite(metrics: dict, step: int, last_good: int | None, directory: str) -> None:
    """Stop the run at the first non-finite metric (a NaN anywhere means the state is lost)."""
    for name in sorted(metrics):
        values = np.asarray(metrics[name], np.float64)
        if not np.all(np.isfinite(values)):
            bad = step + int(np.argmax(~np.isfinite(values))) + 1
            where = f"checkpoint {last_good}" if last_good is not None else "no checkpoint yet"
            raise TrainingDiverged(f"{name} is {values[~np.isfinite(values)][0]} at step {bad}; kept {where} in "
                                   f"{directory}; lower optim.learning_rate or set optim.grad_clip")


def train(config: ml_collections.ConfigDict, workdir: str, stop_after: int | None = None) -> TrainState:
    """Train (or resume) the run of ``config`` in ``workdir`` up to ``config.train.num_steps``.

    ``stop_after`` ends the process's work after that many steps without the end-of-run writes, as a
    killed run would (used to test resumption).
    """
    workdir = os.path.abspath(workdir)
    _check_workdir(workdir)
    run = open_run(config, workdir)
    _write_config(workdir, config)
    tcfg = config.train
    state = restore_or_init(run)
    start = int(state.step)
    log = MetricsLog(workdir, resume_step=start)
    k = tcfg.steps_per_call
    fused = make_train_step(run.family, run.mesh, k) if k > 1 else None
    single = make_train_step(run.family, run.mesh, 1)
    progress = Progress(tcfg.num_steps, start, tcfg.progress and jax.process_index() == 0)
    samples_dir = os.path.join(workdir, "samples")
    bs = config.data.batch_size
    step, done, t_last, n_last = start, 0, time.perf_counter(), 0
    last_good = run.checkpointer.latest_step()
    try:
        while step < tcfg.num_steps:
            n = k if (fused is not None and tcfg.num_steps - step >= k) else 1
            if n > 1:
                local = [run.pipeline.batch(s) for s in range(step, step + n)]
                batch = shd.to_global({key: np.stack([b[key] for b in local]) for key in local[0]}, run.mesh, 1)
                state, metrics = fused(state, batch)
            else:
                state, metrics = single(state, shd.to_global(run.pipeline.batch(step), run.mesh))
            metrics = jax.device_get(metrics)
            _check_finite(metrics, step, last_good, run.checkpointer.directory)
            losses = np.asarray(metrics[_main_metric(metrics)], np.float64)
            for i in range(n):
                s = step + i + 1
                if s % tcfg.log_every == 0 or s == tcfg.num_steps:
                    log.write(s, {name: v[i] for name, v in metrics.items()})
            step += n
            done += n
            n_last += n
            if step % tcfg.checkpoint_every < n or step == tcfg.num_steps:
                run.checkpointer.save(step, state)
                last_good = step
            if tcfg.sample_every and step % tcfg.sample_every < n and run.family.sample is not None:
                x, _ = draw_samples(run.family, state.sampling_params(), config.seed, tcfg.num_samples)
                save_samples(x, os.path.join(samples_dir, f"step_{step:06d}.png"), run.pipeline.spec.value_range)
            if tcfg.eval_every and step % tcfg.eval_every < n:
                log.write(step, evaluate(run, state, tcfg.eval_batches))
            now = time.perf_counter()
            if now - t_last > 1.0:
                progress.update(n_last, loss=f"{float(losses[-1]):.4g}", img_s=f"{n_last * bs / (now - t_last):.0f}")
                t_last, n_last = now, 0
            if stop_after is not None and done >= stop_after:
                return state
        progress.update(n_last)
        _finish(run, state, workdir, log)
    finally:
        progress.close()
        log.close()
        run.checkpointer.close()
    return state


def _finish(run: Run, state: TrainState, workdir: str, log: MetricsLog) -> None:
    """End-of-run outputs: final evaluation, sample grid and .npz, loss curve."""
    cfg = run.config
    results = evaluate(run, state, cfg.train.eval_batches)
    if results:
        log.write(int(state.step), results)
    if run.family.sample is not None and jax.process_index() == 0:
        x, info = draw_samples(run.family, state.sampling_params(), cfg.seed, cfg.train.num_samples)
        os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
        save_samples(x, os.path.join(workdir, "samples", f"step_{int(state.step):06d}.png"),
                     run.pipeline.spec.value_range)
        np.savez(os.path.join(workdir, "samples", "final.npz"), samples=x)
    records = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if not any("/" in k for k in r)]
    names = [k for k in (records[0] if records else {}) if "loss" in k]
    if names and jax.process_index() == 0:
        save_loss_curve([r["step"] for r in records], {k: [r[k] for r in records] for k in names},
                        os.path.join(workdir, "loss.png"))


__all__ = ["Run", "draw_samples", "evaluate", "init_state", "load_workdir", "make_train_step", "open_run",
           "restore_or_init", "train"]
