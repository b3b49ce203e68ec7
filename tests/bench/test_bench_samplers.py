"""`gm-jax bench samplers` on its tiniest configuration: the JSON's fields and invariants — NFE equals each
sampler's definition, the Python-stepped chain computes the fused chain's numbers, the overhead ratio is
at least ~1 (a sampler cannot beat NFE network evaluations), no recompilation when steps/η/guidance change."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.bench.timing import CompileWindow, TraceCounter, time_call
from gm_jax.cli import main

# Each sampler's NFE for N steps, written out independently of gm_jax (Karras et al. 2022 Alg. 1 for Heun:
# no correction on the last step; PC: 1 corrector + 1 predictor per level; annealed Langevin: 5 inner steps
# per level + 1 final denoising step, the family defaults).
NFE = {"ddim": lambda n: n, "heun": lambda n: 2 * n - 1, "pc": lambda n: 2 * n,
       "annealed_langevin": lambda n: 5 * n + 1, "ddpm": lambda n: n}
TIMED = ("ddim", "heun", "annealed_langevin")  # one of each NFE formula, to keep the test fast
FIELDS = ("net", "batch", "sampler", "steps", "nfe", "dtype", "compile_s", "wall_s", "samples_per_s", "forward_s",
          "forward_call_s", "overhead_ratio", "overhead_ratio_call", "python_wall_s", "fused_speedup", "recompiles",
          "backend_compiles_on_change", "device_kind", "jax_version", "platform")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bench") / "samplers")
    argv = ["bench", "samplers", "--quick", "--out", out, "--nets", "mlp2d_tiny", "--batches", "4", "--steps", "2,3",
            "--num_timesteps", "20", "--samplers", ",".join(TIMED), "--quality_samplers", "ddpm",
            "--quality_steps", "4", "--quality_num", "256", "--repeats", "2",
            "--min_time", "0"]
    assert main(argv) == 0
    with open(os.path.join(out, "samplers.json")) as f:
        return out, json.load(f)


def test_timing_records(bench):
    out, payload = bench
    timing = payload["timing"]
    assert {(r["sampler"], r["steps"]) for r in timing} == {(s, n) for s in TIMED for n in (2, 3)}
    for r in timing:
        assert all(k in r for k in FIELDS), sorted(set(FIELDS) - set(r))
        assert r["nfe"] == NFE[r["sampler"]](r["steps"]) == r["python_nfe"], r
        assert r["python_max_abs_diff"] < 1e-5, r  # the Python-stepped chain is the same chain
        # A sampler cannot do NFE network evaluations in less work than NFE amortized forwards. Checked on
        # process CPU time (wall time on a shared machine also counts waiting). Annealed Langevin is exempt:
        # its inner steps share one noise level, so XLA hoists the time embedding out of its inner loop.
        if r["sampler"] != "annealed_langevin":
            assert r["overhead_ratio_cpu"] >= 0.9, r
        assert r["overhead_ratio_cpu"] > 0 and r["overhead_ratio"] > 0
        assert r["recompiles"] == 0 and r["backend_compiles_on_change"] == 0, r
        assert r["samples_per_s"] == pytest.approx(r["batch"] / r["wall_s"])
        assert r["overhead_ratio"] == pytest.approx(r["wall_s"] / (r["nfe"] * r["forward_s"]))
        assert r["overhead_ratio_cpu"] == pytest.approx(r["cpu_s"] / (r["nfe"] * r["forward_cpu_s"]))
        assert r["compile_s"] > 0 and r["batch"] == 4 and r["dtype"] == "float32"
    assert payload["environment"]["jax_version"] == jax.__version__
    for name in ("samplers.md", "bench_time_vs_nfe.png", "bench_quality_vs_nfe.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    md = open(os.path.join(out, "samplers.md")).read()
    assert "| network | batch | sampler |" in md and "heun" in md


def test_quality_and_targets(bench):
    _, payload = bench
    q = {(r["sampler"], r["steps"]): r for r in payload["quality_exact_score"]}
    ref, floor = q[("ddpm", 1000)], q[("exact draws (floor)", 0)]
    assert ref["reference"] and ref["nfe"] == 1000 and q[("ddpm", 4)]["nfe"] == 4
    # DDPM-1000 with the exact score samples the mixture: its distance is at the two-sample noise level
    assert ref["sliced_w2"] < 2.5 * floor["sliced_w2"] + 0.05, (ref, floor)
    assert abs(ref["mmd2"]) < 0.05
    # the one-sample distance to the mixture itself: DDPM-1000 near the exact-draws floor, 4 steps far above it
    assert ref["sw2_true"] < 2.5 * floor["sw2_true"] + 0.05 and q[("ddpm", 4)]["sw2_true"] > ref["sw2_true"] + 0.05
    assert ref["seeds"] == 1 and ref["sw2_true_diff_vs_ref"] == 0.0 and ref["exact_projections"] == 64
    targets = {t["target"].split(" ")[0]: t for t in payload["targets"]}
    assert targets["0"]["met"] is True and targets["0"]["measured"] == 0


def test_compile_counters_see_a_recompilation():
    """The counters behind 'recompiles' are not vacuous: a new input shape is counted by both."""
    counter = TraceCounter(lambda x: jnp.sin(x) * 2.0)
    f = jax.jit(counter)
    f(np.ones(3, np.float32)).block_until_ready()
    with CompileWindow() as same:
        f(np.zeros(3, np.float32)).block_until_ready()
    with CompileWindow() as new:
        f(np.ones(5, np.float32)).block_until_ready()
    assert counter.count == 2 and same.count == 0 and new.count >= 1
    t = time_call(lambda: f(np.ones(3, np.float32)), repeats=3, min_total_s=0.0)
    assert t["repeats"] == 3 and 0 < t["min_s"] <= t["median_s"]


def test_bad_input_is_one_line(capsys):
    assert main(["bench", "samplers", "--nets", "resnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gm-jax: error:") and "resnet" in err and "\n" not in err
    assert main(["bench", "samplers", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
