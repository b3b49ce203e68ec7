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
import socket
import time
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
    timeout = int(train.get("distributed_timeout", 300))
    if address and pid > 0:
        _wait_for_coordinator(address, timeout)
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=n or None,
                                   process_id=pid if pid >= 0 else None,
                                   initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=int(train.get("distributed_heartbeat", 100)))
    except Exception as e:  # ValueError (missing fields), RuntimeError (too late), the runtime's own timeouts
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigError(f"config.train.distributed=true but JAX's distributed runtime could not be joined "
                          f"({reason}); {_HOW}") from None
    return True


def _wait_for_coordinator(address: str, timeout: int) -> None:
    """Wait up to ``timeout`` s until ``address`` (HOST:PORT) accepts a TCP connection. JAX's client aborts
    the whole process (SIGABRT, a C++ stack trace) when it cannot register with the coordinator, so a
    process other than 0 checks first and fails with one line."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"config.train.coordinator_address must be HOST:PORT, got {address!r}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConfigError(f"config.train.distributed=true but the coordinator {address} did not answer "
                                  f"within {timeout} s ({e.strerror or type(e).__name__}); start process 0 "
                                  "there first, or fix --config.train.coordinator_address") from None
            time.sleep(0.2)
