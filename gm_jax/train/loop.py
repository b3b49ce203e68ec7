"""The training loop. It knows only the family protocol (gm_jax.core.Family): it shards each batch over a
``jax.sharding`` mesh, runs the jit-compiled step with the state donated (optionally k steps fused with
``lax.scan``), logs, writes sample grids, checkpoints with orbax and resumes from the work directory.

A resumed run ends bit-identical to an uninterrupted one: the batch of step s is a pure function of
(seed, s), the step's key is ``fold_in(root, s)``, and the checkpoint holds the whole state.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from gm_jax.core.errors import ConfigError, TrainingDiverged
from gm_jax.core.family import Family
from gm_jax.core.rng import purpose_key, step_key
from gm_jax.core.state import TrainState
from gm_jax.train import sharding as shd
from gm_jax.train.checkpoint import Checkpointer
from gm_jax.train.images import save_loss_curve, save_samples
from gm_jax.train.logging import MetricsLog, Progress, read_metrics
from gm_jax.train.peers import peer_watch
from gm_jax.train.workdir import (
    Run,
    check_same_run,
    check_writable,
    draw_samples,
    open_run,
    restore_or_init,
    write_caption_files,
    write_config,
)


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


def evaluate(run: Run, state: TrainState, num_batches: int) -> dict[str, float]:
    """Mean of ``family.evaluate`` over the first ``num_batches`` full eval batches (0: all; a last partial
    batch is left out). Each process evaluates its slice of every global batch."""
    if run.family.evaluate is None:
        return {}
    fn = jax.jit(run.family.evaluate, in_shardings=(shd.replicated(run.mesh), shd.batch_sharding(run.mesh),
                                                    shd.replicated(run.mesh)))
    key = purpose_key(state.rng, "eval")
    field = "train.eval_batch_size" if run.config.train.get("eval_batch_size", 0) else "data.batch_size"
    bs = run.config.train.get("eval_batch_size", 0) or run.config.data.batch_size
    shd.check_batch_size(bs, run.mesh, field)
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


def _check_finite(metrics: dict, step: int, checkpointer: Checkpointer) -> None:
    """Stop the run at the first non-finite metric (a NaN anywhere means the state is lost)."""
    for name in sorted(metrics):
        values = np.asarray(metrics[name], np.float64)
        if not np.all(np.isfinite(values)):
            bad = step + int(np.argmax(~np.isfinite(values))) + 1
            last_good, directory = checkpointer.latest_step(), checkpointer.directory
            where = f"checkpoint {last_good}" if last_good is not None else "no checkpoint yet"
            raise TrainingDiverged(f"{name} is {values[~np.isfinite(values)][0]} at step {bad}; kept {where} in "
                                   f"{directory}; lower optim.learning_rate or set optim.grad_clip")



def check_finite_metrics(results: dict, step: int, what: str = "evaluation") -> None:
    """An evaluation metric that is NaN or inf ends the command (never written as a result)."""
    for name in sorted(results):
        if not np.isfinite(float(results[name])):
            raise TrainingDiverged(f"{what} metric {name} is {float(results[name])} at step {step}; the model's "
                                   "parameters are broken: retrain from an earlier checkpoint with a lower "
                                   "optim.learning_rate or optim.grad_clip")


FINAL_FILE = "final.json"


def is_complete(workdir: str, step: int, num_steps: int) -> bool:
    """The run reached ``num_steps`` and wrote its end-of-run outputs."""
    return step >= num_steps and os.path.isfile(os.path.join(workdir, FINAL_FILE))


def prepare_training(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, TrainState]:
    """Validate a training request and open its run, writing nothing: the work directory must be writable,
    hold no run with another config, and not be past ``config.train.num_steps``."""
    check_writable(workdir)
    check_same_run(workdir, config)
    run = open_run(config, workdir)
    state = restore_or_init(run, verb="resuming from")
    step, total = int(state.step), config.train.num_steps
    if step > total:
        run.checkpointer.close()
        raise ConfigError(f"the run in {workdir} is at step {step}, past config.train.num_steps={total}; "
                          f"pass --config.train.num_steps={step} or more to continue it, or use a new --workdir")
    return run, state


def _stacked_batch(run: Run, step: int, n: int) -> dict:
    if n == 1:
        return shd.to_global(run.pipeline.batch(step), run.mesh)
    local = [run.pipeline.batch(s) for s in range(step, step + n)]
    return shd.to_global({key: np.stack([b[key] for b in local]) for key in local[0]}, run.mesh, 1)


def _periodic_outputs(run: Run, state: TrainState, step: int, n: int, log: MetricsLog) -> None:
    """Checkpoint, sample grid and evaluation when one of their periods ends within the last ``n`` steps."""
    tcfg = run.config.train
    if step % tcfg.checkpoint_every < n or step == tcfg.num_steps:
        run.checkpointer.save(step, state)
    if tcfg.sample_every and step % tcfg.sample_every < n and run.family.can_sample:
        # every process draws (the compiled sampler may span all hosts' devices); process 0 writes
        x, _ = draw_samples(run.family, state.sampling_params(), run.config.seed, tcfg.num_samples)
        if jax.process_index() == 0:
            save_samples(x, os.path.join(run.workdir, "samples", f"step_{step:06d}.png"),
                         run.pipeline.spec.value_range)
    if tcfg.eval_every and step % tcfg.eval_every < n:
        results = evaluate(run, state, tcfg.eval_batches)
        check_finite_metrics(results, step)
        log.write(step, results)


def _train_steps(run: Run, state: TrainState, log: MetricsLog, progress: Progress,
                 stop_after: int | None) -> tuple[TrainState, bool]:
    """Run steps until ``train.num_steps`` (or ``stop_after`` steps); returns the state and whether the
    run reached its end."""
    tcfg = run.config.train
    k = tcfg.steps_per_call
    fused = make_train_step(run.family, run.mesh, k) if k > 1 else None
    single = make_train_step(run.family, run.mesh, 1)
    step = start = int(state.step)
    t_last, n_last = time.perf_counter(), 0
    while step < tcfg.num_steps:
        n = k if (fused is not None and tcfg.num_steps - step >= k) else 1
        state, metrics = (fused if n > 1 else single)(state, _stacked_batch(run, step, n))
        metrics = jax.device_get(metrics)
        _check_finite(metrics, step, run.checkpointer)
        for i in range(n):
            s = step + i + 1
            if s % tcfg.log_every == 0 or s == tcfg.num_steps:
                log.write(s, {name: v[i] for name, v in metrics.items()})
        step += n
        n_last += n
        _periodic_outputs(run, state, step, n, log)
        now = time.perf_counter()
        if now - t_last > 1.0:
            loss = float(np.asarray(metrics[_main_metric(metrics)])[-1])
            img_s = n_last * run.config.data.batch_size / (now - t_last)
            progress.update(n_last, loss=f"{loss:.4g}", img_s=f"{img_s:.0f}")
            t_last, n_last = now, 0
        if stop_after is not None and step - start >= stop_after:
            return state, False
    progress.update(n_last)
    return state, True


def train(config: ml_collections.ConfigDict, workdir: str, stop_after: int | None = None) -> TrainState:
    """Train (or resume) the run of ``config`` in ``workdir`` up to ``config.train.num_steps``.

    The request is validated before anything is written (:func:`prepare_training`); a run that is already
    complete is left untouched. ``stop_after`` ends the process's work after that many steps without the
    end-of-run writes, as a killed run would (used to test resumption).
    """
    workdir = os.path.abspath(workdir)
    run, state = prepare_training(config, workdir)
    if is_complete(workdir, int(state.step), config.train.num_steps):
        run.checkpointer.close()
        return state
    os.makedirs(workdir, exist_ok=True)
    writer = jax.process_index() == 0  # of several processes, only process 0 writes logs, samples and config
    if writer:
        write_config(workdir, config)
        write_caption_files(workdir, run.pipeline)
    log = MetricsLog(workdir, resume_step=int(state.step), active=writer)
    progress = Progress(config.train.num_steps, int(state.step), config.train.progress and jax.process_index() == 0)
    try:
        with peer_watch():  # several processes: a lost one ends the others at once, with one line
            state, finished = _train_steps(run, state, log, progress, stop_after)
            if finished:
                _finish(run, state, workdir, log)
    finally:
        progress.close()
        log.close()
        run.checkpointer.close()
    return state


def _finish(run: Run, state: TrainState, workdir: str, log: MetricsLog) -> None:
    """End-of-run outputs: final evaluation, sample grid and .npz, loss curve, then ``final.json`` (whose
    presence marks the run complete)."""
    cfg, step = run.config, int(state.step)
    if run.checkpointer.latest_step() != step:
        run.checkpointer.save(step, state)
    results = evaluate(run, state, cfg.train.eval_batches)
    check_finite_metrics(results, step)
    if results:
        log.write(step, results)
    if run.family.can_sample:  # drawn by every process (see _periodic_outputs), written by process 0
        x, _ = draw_samples(run.family, state.sampling_params(), cfg.seed, cfg.train.num_samples)
    if run.family.can_sample and jax.process_index() == 0:
        os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
        save_samples(x, os.path.join(workdir, "samples", f"step_{step:06d}.png"), run.pipeline.spec.value_range)
        np.savez(os.path.join(workdir, "samples", "final.npz"), samples=x)
    if jax.process_index() == 0:
        records = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if not any("/" in k for k in r)]
        names = [k for k in (records[0] if records else {}) if "loss" in k]
        if names:
            save_loss_curve([r["step"] for r in records], {k: [r[k] for r in records] for k in names},
                            os.path.join(workdir, "loss.png"))
        tmp = os.path.join(workdir, FINAL_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"step": step, **results}, f, indent=2)
        os.replace(tmp, os.path.join(workdir, FINAL_FILE))
    if jax.process_count() > 1:  # no process returns before final.json exists: all then agree the run is complete
        multihost_utils.sync_global_devices("gm_jax_final")


__all__ = ["FINAL_FILE", "check_finite_metrics", "evaluate", "is_complete", "make_train_step", "prepare_training",
           "train"]
