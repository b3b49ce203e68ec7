"""Scale-out on JAX's distributed runtime: 2 processes x 4 simulated CPU devices on loopback train the tiny
VAE of test_loop and must match the 1-process x 8-device run of the same global batch; only process 0 writes
logs, samples and config; checkpoints restore across process counts; a lost process ends its peer within a
bounded time, and the resumed run is bit-identical to an uninterrupted one.

The runs are launched once for the module (each launch starts two Python processes) and shared by the tests.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gm_jax.train.checkpoint import MANIFEST
from gm_jax.train.loop import train
from tests.train.test_loop import leaves, losses, tiny_config

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEARTBEAT = 3           # seconds without heartbeats after which the coordinator declares a process dead
LAUNCH_TIMEOUT = 150    # seconds a launch may take before both processes are killed and the test fails
LOST_PEER_LINE = "gm-jax: error: process 1 of the 2-process run ended without finishing ("
# a SIGKILLed peer's socket reads as closed, or (when the kernel resets it first, seen under load) as reset
LOST_PEER_REASONS = ("connection closed)", "Connection reset by peer)")
JAX_FATAL_LINE = "Terminating process because the JAX distributed service detected fatal errors"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(base: str, data_dir: str, jobs: list[dict], die_after_save: list[int] | None = None) -> dict:
    """Run the worker as processes 0 and 1 of a 2-process job; returns their exit codes, exit times and
    output. Both are killed (and the test fails) when the launch runs past LAUNCH_TIMEOUT."""
    out = os.path.join(base, "out")
    os.makedirs(out, exist_ok=True)
    flags = os.environ["XLA_FLAGS"].replace("device_count=8", "device_count=4")  # the suite's, 4 devices
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags,
               PYTHONPATH=REPO)
    port, procs = _free_port(), []
    for i in range(2):
        spec = dict(port=port, num_processes=2, process_id=i, data_dir=data_dir, init_timeout=60,
                    heartbeat=HEARTBEAT, out=out, jobs=jobs, die_after_save=die_after_save)
        with open(os.path.join(base, f"spec{i}.json"), "w") as f:
            json.dump(spec, f)
        with open(os.path.join(base, f"log{i}.txt"), "w") as log:
            procs.append(subprocess.Popen([sys.executable, WORKER, os.path.join(base, f"spec{i}.json")], env=env,
                                          cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    start, ended = time.monotonic(), {}
    try:
        while len(ended) < 2:
            for i, p in enumerate(procs):
                if i not in ended and p.poll() is not None:
                    ended[i] = time.monotonic() - start
            if time.monotonic() - start > LAUNCH_TIMEOUT:
                raise AssertionError(f"2-process launch in {base} ran past {LAUNCH_TIMEOUT} s (a hang)")
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    logs = [open(os.path.join(base, f"log{i}.txt")).read() for i in range(2)]
    return dict(rc=[p.returncode for p in procs], ended=ended, logs=logs, out=out)


def _checked(result: dict) -> dict:
    assert result["rc"] == [0, 0], "\n".join(line for log in result["logs"] for line in log.splitlines()[-5:])
    return result


def _state(out: str, job: int) -> list[np.ndarray]:
    with np.load(os.path.join(out, f"state_{job}_0.npz")) as z:
        return [z[f"leaf_{i}"] for i in range(len([k for k in z.files if k.startswith("leaf_")]))] + [z["rng"]]


def _leaves(state) -> list[np.ndarray]:
    """The leaves the worker saves (params, optimizer state, EMA) and the key data, in the same order."""
    return leaves(state) + [np.asarray(jax.random.key_data(state.rng))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """Every run of this module: 1-process references in this process (8 devices), 2-process launches."""
    assert jax.process_count() == 1 and jax.device_count() == 8
    base = str(tmp_path_factory.mktemp("dist"))
    d = {name: os.path.join(base, name) for name in ("one", "one_to_4", "two", "killed")}
    r = {"dirs": d, "one_state": _leaves(train(tiny_config(data_dir), d["one"]))}
    # a 1-process run killed after its checkpoint 4 (as train(..., stop_after=4) leaves it, without a rerun)
    shutil.copytree(d["one"], d["one_to_4"])
    shutil.rmtree(os.path.join(d["one_to_4"], "checkpoints", "8"))
    os.remove(os.path.join(d["one_to_4"], "final.json"))
    r["killed"] = _launch(os.path.join(base, "l1"), data_dir, [{"workdir": d["killed"]}], die_after_save=[1, 4])
    for copy in ("killed_2proc", "killed_1proc"):
        d[copy] = os.path.join(base, copy)
        shutil.copytree(d["killed"], d[copy])
    r["main"] = _checked(_launch(os.path.join(base, "l2"), data_dir, [{"workdir": d[job]} for job in
                                                                      ("two", "one_to_4", "killed_2proc")]))
    r["killed_1proc_state"] = _leaves(train(tiny_config(data_dir), d["killed_1proc"]))  # 2-proc ckpt, 1 proc
    return r


def test_two_processes_match_one_process(runs):
    d = runs["dirs"]
    two, one = losses(d["two"]), losses(d["one"])
    assert len(two) == 8
    np.testing.assert_allclose(two, one, rtol=1e-5)
    for x, y in zip(_state(runs["main"]["out"], 0), runs["one_state"], strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def _outside_checkpoints(workdir: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(workdir):
        dirs[:] = [x for x in dirs if os.path.join(root, x) != os.path.join(workdir, "checkpoints")]
        found += [os.path.relpath(os.path.join(root, f), workdir) for f in files]
    return sorted(found)


def test_only_process_zero_writes(runs):
    d = runs["dirs"]
    # the same outputs as the 1-process run, each once (events file names hold time and host)
    names = [n for n in _outside_checkpoints(d["two"]) if not n.startswith("events.out.tfevents")]
    assert names == [n for n in _outside_checkpoints(d["one"]) if not n.startswith("events.out.tfevents")]
    assert sum(n.startswith("events.out.tfevents") for n in os.listdir(d["two"])) == 1
    assert [r["step"] for r in map(json.loads, open(os.path.join(d["two"], "metrics.jsonl")))].count(8) == 2
    # process 1's Python-level writes: only orbax's own per-process files in checkpoints/ (and that folder)
    writes = json.load(open(os.path.join(runs["main"]["out"], "writes_1.json")))
    for job in ("two", "one_to_4", "killed_2proc"):
        ckpt = os.path.join(d[job], "checkpoints")
        for w in writes:
            if w.split(" ", 1)[1].startswith(d[job] + os.sep):
                path = w.split(" ", 1)[1]
                assert path == ckpt or (path.startswith(ckpt + os.sep) and "process_1" in path), w


def test_checkpoint_written_once_and_restores_across_process_counts(runs):
    d = runs["dirs"]
    folder = os.path.join(d["two"], "checkpoints")
    assert sorted(os.listdir(folder)) == ["4", "8"]                       # no leftover temporary folders
    for step in ("4", "8"):
        manifest = json.load(open(os.path.join(folder, step, MANIFEST)))
        assert manifest["step"] == int(step)
        assert len({f["path"] for f in manifest["files"]}) == len(manifest["files"])
    # 1-process checkpoint 4 resumed by 2 processes; 2-process checkpoint 4 resumed by 1 process
    np.testing.assert_allclose(losses(d["one_to_4"]), losses(d["one"]), rtol=1e-5)
    np.testing.assert_allclose(losses(d["killed_1proc"]), losses(d["one"]), rtol=1e-5)
    for x, y in zip(runs["killed_1proc_state"], runs["one_state"], strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    for x, y in zip(_state(runs["main"]["out"], 1), runs["one_state"], strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_lost_process_ends_its_peer_and_the_run_resumes_bit_identical(runs):
    killed = runs["killed"]
    assert killed["rc"][1] == -signal.SIGKILL
    assert killed["rc"][0] == 2                                           # the survivor ended, exit 2,
    assert killed["ended"][0] - killed["ended"][1] < HEARTBEAT            # ... at once (the watchdog),
    survivor = [line for line in killed["logs"][0].splitlines() if line.strip()]
    assert survivor[-1].startswith(LOST_PEER_LINE)                        # ... with one line of ours
    assert survivor[-1][len(LOST_PEER_LINE):].startswith(LOST_PEER_REASONS), survivor[-1]
    assert JAX_FATAL_LINE not in killed["logs"][0] and "Traceback" not in killed["logs"][0]
    d = runs["dirs"]
    assert sorted(os.listdir(os.path.join(d["killed"], "checkpoints"))) == ["4"]
    assert [r["step"] for r in map(json.loads, open(os.path.join(d["killed"], "metrics.jsonl")))] == [1, 2, 3, 4]
    resumed, full = _state(runs["main"]["out"], 2), _state(runs["main"]["out"], 0)
    assert all(np.array_equal(x, y) for x, y in zip(resumed, full, strict=True))
    assert np.array_equal(losses(d["killed_2proc"]), losses(d["two"]))
