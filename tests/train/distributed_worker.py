"""One process of a multi-process training run, launched by ``test_distributed.py``.

``python tests/train/distributed_worker.py SPEC.json``: joins JAX's distributed runtime on loopback
(``jax.distributed.initialize``, called by the first ``train`` from the config's launch fields), then
trains each job of the spec in turn with ``gm_jax.train.loop.train``.
Environment (set by the launcher): ``JAX_PLATFORMS=cpu`` and ``XLA_FLAGS`` with the simulated device count.

Spec fields: ``port``, ``num_processes``, ``process_id``, ``data_dir``, ``init_timeout`` and ``heartbeat``
(seconds), ``out`` (a folder outside every work directory for this process's reports), ``jobs`` (a list of
``{"workdir", "stop_after", "train"}``, ``train`` holding overrides of ``config.train``), ``die_after_save``
(optional ``[process_id, step]``: that process SIGKILLs itself once checkpoint ``step`` is saved).

Reports in ``out``: ``state_<job>_<process>.npz`` (the final state's leaves, from process 0 only: arrays are
replicated) and ``writes_<process>.json`` (every Python-level file write, rename or new folder under a work
directory; orbax's C++ tensorstore writes are not seen).
"""

import builtins
import io
import json
import os
import signal
import sys
import time

START = time.monotonic()


def _audit_writes(roots: list[str], log: list[str]) -> None:
    """Record file opens for writing, renames and new folders under ``roots`` (paths made absolute)."""
    roots = [os.path.abspath(r) + os.sep for r in roots]

    def under(path) -> bool:
        try:
            p = os.path.abspath(os.fspath(path))
        except TypeError:
            return False
        return any((p + os.sep).startswith(r) for r in roots)

    real_open, real_replace, real_rename, real_mkdir = builtins.open, os.replace, os.rename, os.mkdir

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and under(file):
            log.append(f"open {os.path.abspath(os.fspath(file))}")
        return real_open(file, mode, *args, **kwargs)

    def replace_(src, dst, *args, **kwargs):
        if under(src) or under(dst):
            log.append(f"rename {os.path.abspath(os.fspath(dst))}")
        return real_replace(src, dst, *args, **kwargs)

    def rename_(src, dst, *args, **kwargs):
        if under(src) or under(dst):
            log.append(f"rename {os.path.abspath(os.fspath(dst))}")
        return real_rename(src, dst, *args, **kwargs)

    def mkdir_(path, *args, **kwargs):
        if under(path) and not os.path.exists(path):
            log.append(f"mkdir {os.path.abspath(os.fspath(path))}")
        return real_mkdir(path, *args, **kwargs)

    builtins.open = io.open = open_
    os.replace, os.rename, os.mkdir = replace_, rename_, mkdir_


def _die_after_save(step: int) -> None:
    """This process SIGKILLs itself right after checkpoint ``step`` is saved (a host lost mid-run)."""
    from gm_jax.train import checkpoint

    save = checkpoint.Checkpointer.save

    def save_then_die(self, s, state):
        save(self, s, state)
        if s == step:
            print(f"worker: process killed after checkpoint {s}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.Checkpointer.save = save_then_die


def _save_state(path: str, state) -> None:
    import jax
    import numpy as np

    leaves = jax.tree.leaves((state.params, state.opt_state, state.ema_params))
    arrays = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays["rng"] = np.asarray(jax.random.key_data(state.rng))
    arrays["step"] = np.asarray(int(state.step))
    np.savez(path, **arrays)


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    import jax

    pid = spec["process_id"]
    # the runtime is joined by the first train() from these config fields (gm_jax.train.launch), as
    # `gm-jax train --config.train.distributed=true --config.train.coordinator_address=...` would
    launch = dict(distributed=True, coordinator_address=f"127.0.0.1:{spec['port']}",
                  num_processes=spec["num_processes"], process_id=pid, distributed_timeout=spec["init_timeout"],
                  distributed_heartbeat=spec["heartbeat"])
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from gm_jax.train.compile_cache import enable_compilation_cache
    from gm_jax.train.loop import train
    from tests.train.test_loop import tiny_config

    enable_compilation_cache()  # GM_JAX_COMPILATION_CACHE from the launching test: later launches skip compiles

    writes: list[str] = []
    if pid != 0:
        _audit_writes([job["workdir"] for job in spec["jobs"]], writes)
    if spec.get("die_after_save") and spec["die_after_save"][0] == pid:
        _die_after_save(spec["die_after_save"][1])
    for j, job in enumerate(spec["jobs"]):
        state = train(tiny_config(spec["data_dir"], **launch, **job.get("train", {})), job["workdir"],
                      stop_after=job.get("stop_after"))
        assert jax.process_count() == spec["num_processes"]
        if pid == 0:
            _save_state(os.path.join(spec["out"], f"state_{j}_{pid}.npz"), state)
        print(f"worker: process {pid} job {j} done at {time.monotonic() - START:.1f} s", file=sys.stderr, flush=True)
    with open(os.path.join(spec["out"], f"writes_{pid}.json"), "w") as f:
        json.dump(writes, f)
    print(f"worker: process {pid} done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
