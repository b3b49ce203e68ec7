"""Joining JAX's distributed runtime from the config (``config.train.distributed``).

``jax.distributed.initialize`` must run before anything touches the XLA backend (even ``jax.process_count``),
so :func:`join_distributed` is the first thing :func:`gm_jax.train.workdir.open_run` does. On TPU pods, Slurm
and Open MPI JAX finds the coordinator, the process count and this process's id itself; elsewhere they come
from ``train.coordinator_address`` (or ``JAX_COORDINATOR_ADDRESS``), ``train.num_processes`` and
``train.process_id``. ``train.distributed_timeout`` bounds the wait for the other processes and
``train.distributed_heartbeat`` how long a silent process is waited for once the run is going (JAX's
defaults: 300 s and 100 s). A failure is one line that says what to set.
"""

from __future__ import annotations

import os
from typing import Any

from gm_jax.core.errors import ConfigError

LAUNCH_FIELDS = ("distributed", "coordinator_address", "num_processes", "process_id", "distributed_timeout",
                 "distributed_heartbeat")
_HOW = ("on TPU pods, Slurm or Open MPI JAX finds the processes itself; elsewhere set "
        "--config.train.coordinator_address=HOST:PORT (or JAX_COORDINATOR_ADDRESS), "
        "--config.train.num_processes=N and --config.train.process_id=I on every process")


def launch_defaults() -> dict[str, Any]:
    """The launch fields of ``config.train`` (they say how a run is started, not what it computes)."""
    return dict(distributed=False, coordinator_address="", num_processes=0, process_id=-1,
                distributed_timeout=300, distributed_heartbeat=100)


def check_launch(train: Any) -> None:
    """Range checks of the launch fields (before any work)."""
    n, pid = train.get("num_processes", 0), train.get("process_id", -1)
    for field, value, low in (("num_processes", n, 0), ("process_id", pid, -1),
                              ("distributed_timeout", train.get("distributed_timeout", 300), 1),
                              ("distributed_heartbeat", train.get("distributed_heartbeat", 100), 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"config.train.{field} must be an integer >= {low}, got {value!r}")
    if n and pid >= n:
        raise ConfigError(f"config.train.process_id={pid} must be < config.train.num_processes={n}")
    if not isinstance(train.get("coordinator_address", ""), str):
        raise ConfigError("config.train.coordinator_address must be a string HOST:PORT (or empty)")


def join_distributed(train: Any) -> bool:
    """Call ``jax.distributed.initialize`` when ``train.distributed`` asks for it and no one has yet; True when
    this call joined. Raises a one-line ConfigError when the runtime cannot be joined."""
    import jax

    if not train.get("distributed", False) or jax.distributed.is_initialized():
        return False
    check_launch(train)
    address = train.get("coordinator_address", "") or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    n, pid = train.get("num_processes", 0), train.get("process_id", -1)
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=n or None,
                                   process_id=pid if pid >= 0 else None,
                                   initialization_timeout=int(train.get("distributed_timeout", 300)),
                                   heartbeat_timeout_seconds=int(train.get("distributed_heartbeat", 100)))
    except Exception as e:  # ValueError (missing fields), RuntimeError (too late), the runtime's own timeouts
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigError(f"config.train.distributed=true but JAX's distributed runtime could not be joined "
                          f"({reason}); {_HOW}") from None
    return True
