"""Run ``gm-jax train`` under a CPU-time budget: the child is sent SIGINT (the loop keeps its last checkpoint)
once its user + system CPU time passes ``--cpu_seconds``. Writes WORKDIR/budget_run.json with the CPU
seconds, wall seconds and the last checkpointed step, so that short CPU runs of different families can be
compared at an equal training budget.

    nice -n 15 python experiments/budget_train.py --cpu_seconds 300 -- \
        experiments/configs/vqvae_fashion_mnist.py --workdir runs/vqvae_fmnist --config.train.num_steps=5000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of process ``pid`` (all its threads) and its waited-for children, from
    /proc/PID/stat (fields 14-17, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def last_step(workdir: str) -> int:
    folder = os.path.join(workdir, "checkpoints")
    steps = [int(d) for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(folder) else []
    return max(steps, default=0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu_seconds", type=float, required=True)
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="-- CONFIG --workdir DIR [--config.X=Y ...]")
    args = p.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    workdir = train_args[train_args.index("--workdir") + 1]
    t0 = time.perf_counter()
    # a background shell starts its jobs with SIGINT ignored; restore the default so that the child's Python
    # turns SIGINT into KeyboardInterrupt (the loop then stops cleanly, keeping its last checkpoint)
    child = subprocess.Popen([sys.executable, "-m", "gm_jax.cli", "train", *train_args,
                              "--config.train.progress=false"],
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    used, interrupted = 0.0, False
    while child.poll() is None:
        time.sleep(1.0)
        try:
            used = cpu_seconds(child.pid)
        except OSError:
            break
        if used > args.cpu_seconds and not interrupted:
            child.send_signal(signal.SIGINT)
            interrupted = True
    rc = child.wait()
    record = {"cpu_seconds": round(used, 1), "wall_seconds": round(time.perf_counter() - t0, 1),
              "budget_cpu_seconds": args.cpu_seconds, "interrupted": interrupted, "returncode": rc,
              "last_checkpoint_step": last_step(workdir), "command": " ".join(train_args)}
    with open(os.path.join(workdir, "budget_run.json"), "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(record))
    return 0 if rc in (0, 130) else rc


if __name__ == "__main__":
    sys.exit(main())
