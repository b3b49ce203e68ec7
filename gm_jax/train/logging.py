"""Run logs: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard scalars (tensorboardX, no
TensorFlow needed) and a tqdm progress bar."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any


def read_metrics(path: str) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file (empty when it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
    """Appends records to ``WORKDIR/metrics.jsonl`` and TensorBoard.

    On resume from checkpoint ``resume_step``, records of later steps (written before the run was killed,
    then lost with the state) are dropped first, so the file of a resumed run equals an uninterrupted one.
    With ``active=False`` (every process of a multi-process run but process 0) nothing is read or written.
    """

    def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True, active: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._file = self._tb = None
        if not active:
            return
        if resume_step >= 0 and os.path.exists(self.path):
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                for r in kept:
                    f.write(json.dumps(r) + "\n")
            os.replace(tmp, self.path)
        self._file = open(self.path, "a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(workdir)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        record = {"step": int(step)}
        record.update({k: float(v) for k, v in metrics.items()})
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if math.isfinite(float(v)):
                    self._tb.add_scalar(k, float(v), int(step))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()


class Progress:
    """A tqdm bar showing the step, loss, images/s and ETA (a no-op when disabled)."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, n: int, **postfix: Any) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
