"""Measuring primitives: compile time, steady-state wall time, compile counting and the run environment.

* Steady-state time is the median of ``repeats`` timed calls after ``warmup`` untimed calls, each call
  ended by ``jax.block_until_ready`` (JAX dispatches asynchronously; without the block the clock stops
  before the device is done).
* Compile time is the time of ``jax.jit(f).lower(*args).compile()`` (tracing + lowering + XLA compile).
* Compilations are counted two ways: by a trace counter inside the traced Python function (a retrace
  happens exactly when jit misses its cache) and by JAX's own monitoring event
  ``/jax/core/compile/backend_compile_duration`` (every XLA compilation in the process).
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from gm_jax.core.errors import require

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

_lock = threading.Lock()
_backend_compiles = [0]
_listener_installed = [False]


def _on_event(name: str, duration: float, **kwargs: Any) -> None:
    del duration, kwargs
    if name == BACKEND_COMPILE_EVENT:
        with _lock:
            _backend_compiles[0] += 1


def backend_compile_count() -> int:
    """XLA compilations in this process since the listener was installed (installed on first call)."""
    if not _listener_installed[0]:
        jax.monitoring.register_event_duration_secs_listener(_on_event)
        _listener_installed[0] = True
    return _backend_compiles[0]


class CompileWindow:
    """``with CompileWindow() as w: ...`` then ``w.count``: XLA compilations during the block."""

    def __enter__(self) -> CompileWindow:
        self._start = backend_compile_count()
        self.count = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.count = backend_compile_count() - self._start


class TraceCounter:
    """Wraps a Python function so that each trace by ``jax.jit`` increments ``count``."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.count = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        return self.fn(*args, **kwargs)


def compile_seconds(jitted: Any, *args: Any) -> tuple[Any, float]:
    """(compiled executable, seconds) of ``jitted.lower(*args).compile()`` — the ahead-of-time cost a first
    call pays (tracing, lowering to StableHLO and the XLA compilation)."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, min_total_s: float = 0.0,
              max_repeats: int = 200) -> dict[str, float]:
    """Median wall time of ``fn()`` (blocked until its outputs are ready) over at least ``repeats`` runs
    after ``warmup`` untimed runs — more runs, up to ``max_repeats``, until ``min_total_s`` seconds were
    timed (short calls on a shared machine need many samples); also the minimum, the spread
    (max − min)/median, and the process CPU time per call (``cpu_*``: all threads of this process; on a
    machine shared with other jobs it measures the work done, where wall time also counts waiting)."""
    require(repeats >= 1, f"repeats must be >= 1, got {repeats}")
    for _ in range(max(warmup, 0)):
        jax.block_until_ready(fn())
    times: list[float] = []
    cpu: list[float] = []
    while len(times) < repeats or (sum(times) < min_total_s and len(times) < max_repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "spread": (max(times) - min(times)) / med if med > 0 else 0.0,
            "repeats": len(times), "cpu_median_s": statistics.median(cpu), "cpu_min_s": min(cpu)}


def time_interleaved(fns: Sequence[Callable[[], Any]], repeats: int = 5, warmup: int = 1, min_total_s: float = 0.0,
                     max_repeats: int = 200) -> list[dict[str, list[float]]]:
    """Wall and process CPU time of every call of each of ``fns``, timed in rounds of one call of each (so a
    change of the machine's load during the measurement hits all of them alike, and differences between
    them — e.g. of one compiled chain at two step counts — can be taken round by round): at least
    ``repeats`` rounds after ``warmup`` untimed ones, more, up to ``max_repeats``, until ``min_total_s``
    seconds per function were timed on average. Returns per function ``{"wall": [...], "cpu": [...]}``."""
    require(repeats >= 1 and len(fns) >= 1, f"need repeats >= 1 and at least one function, got {repeats}")
    for _ in range(max(warmup, 0)):
        for fn in fns:
            jax.block_until_ready(fn())
    out: list[dict[str, list[float]]] = [{"wall": [], "cpu": []} for _ in fns]
    total, rounds = 0.0, 0
    while rounds < repeats or (total < min_total_s * len(fns) and rounds < max_repeats):
        for fn, rec in zip(fns, out, strict=True):
            c0, t0 = time.process_time(), time.perf_counter()
            jax.block_until_ready(fn())
            rec["wall"].append(time.perf_counter() - t0)
            rec["cpu"].append(time.process_time() - c0)
            total += rec["wall"][-1]
        rounds += 1
    return out


def difference_per_unit(lo: dict[str, list[float]], hi: dict[str, list[float]], units: float) -> dict[str, float]:
    """The cost of one unit of work that ``hi`` does ``units`` times more than ``lo`` (two entries of
    :func:`time_interleaved`): ``min_s`` = (min hi − min lo)/units (the least disturbed calls of each: on a
    shared machine load only adds time), ``median_s`` = the median over rounds of (hi − lo)/units,
    ``cpu_s`` = the same median of process CPU times."""
    require(units > 0, f"units must be > 0, got {units}")
    paired = lambda k: statistics.median(b - a for a, b in zip(lo[k], hi[k], strict=True)) / units
    return {"min_s": (min(hi["wall"]) - min(lo["wall"])) / units, "median_s": paired("wall"), "cpu_s": paired("cpu")}


def environment() -> dict[str, Any]:
    """Device kind, platform, device count, jax/jaxlib versions, Python and CPU count of this process."""
    import jaxlib

    dev = jax.devices()[0]
    return {"device_kind": dev.device_kind, "platform": dev.platform, "device_count": jax.device_count(),
            "jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "x64": bool(jax.config.jax_enable_x64),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
