"""`gm-jax bench samplers` on its tiniest configuration: the JSON's fields and invariants — NFE equals each
sampler's definition, the Python-stepped chain computes the fused chain's numbers, the overhead ratio is
at least ~1 (a sampler cannot beat NFE network evaluations), no recompilation when steps/η/guidance change;
issue 18's per-step cost beyond the network of every registered sampler and the batch-size independence of
per-example noise with each of JAX's PRNG implementations."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.bench import commands
from gm_jax.bench import samplers as bench_samplers
from gm_jax.bench.samplers import expected_nfe, sampler_step_cost
from gm_jax.bench.timing import CompileWindow, TraceCounter, difference_per_unit, time_call, time_interleaved
from gm_jax.cli import main
from gm_jax.diffusion.samplers import get_sampler, sampler_names

# Each sampler's NFE for N steps, written out independently of gm_jax (Karras et al. 2022 Alg. 1 for Heun:
# no correction on the last step; PC: 1 corrector + 1 predictor per level; annealed Langevin: 5 inner steps
# per level + 1 final denoising step, the family defaults).
NFE = {"ddim": lambda n: n, "heun": lambda n: 2 * n - 1, "pc": lambda n: 2 * n,
       "annealed_langevin": lambda n: 5 * n + 1, "ddpm": lambda n: n}
TIMED = ("ddim", "heun", "annealed_langevin")  # one of each NFE formula, to keep the test fast
FIELDS = ("net", "batch", "sampler", "steps", "nfe", "dtype", "compile_s", "wall_s", "samples_per_s", "forward_s",
          "forward_call_s", "overhead_ratio", "overhead_ratio_call", "python_wall_s", "fused_speedup", "recompiles",
          "backend_compiles_on_change", "device_kind", "jax_version", "platform")


# The per-step section on a tiny shape, one compiled chain per sampler (no padded chain, no Python-stepped
# baseline: those are tested on Euler below): 128 more steps than the short chain, so even Euler's ~1 µs steps add
# up to well above the jitter of the least-disturbed call.
TINY_PER_STEP = {"per_step_batch": 4, "per_step_shape": (8, 8, 1), "per_step_steps": (2, 130), "per_step_padding": 0,
                 "per_step_repeats": 5, "per_step_python_baseline": False}
# Noise draws per step of the bench's chains, from the samplers' definitions (η = 0 for DDIM; 5 inner Langevin
# steps per level; PC: predictor + 1 corrector step; ancestral / SDE solvers: one per step but into σ = 0)
DRAWS = {"ddpm": 1, "ddim": 0, "annealed_langevin": 5, "pc": 2, "euler_ancestral": 1, "dpmpp_2m_sde": 1,
         "dpmpp_2s_ancestral": 1, "dpmpp_3m_sde": 1, "restart": 0}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bench") / "samplers")
    argv = ["bench", "samplers", "--quick", "--out", out, "--nets", "mlp2d_tiny", "--batches", "4", "--steps", "2,3",
            "--num_timesteps", "20", "--samplers", ",".join(TIMED), "--quality_samplers", "ddpm",
            "--quality_steps", "4", "--quality_num", "256", "--repeats", "2",
            "--min_time", "0"]
    with pytest.MonkeyPatch.context() as mp:
        for k, v in TINY_PER_STEP.items():
            mp.setitem(commands.PER_STEP_QUICK, k, v)
        # every key implementation and threefry mode, without the sequential (lax.map) draws: 2 compilations less
        variants = tuple(v for v in bench_samplers.PRNG_VARIANTS if v[2] != "per_example_map")
        mp.setattr(bench_samplers, "PRNG_VARIANTS", variants)
        # with the torch extra installed, diffusers' column for DDIM only (all schedulers: their own test)
        mp.setattr(bench_samplers, "DIFFUSERS_SCHEDULERS", {"ddim": bench_samplers.DIFFUSERS_SCHEDULERS["ddim"]})
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


def _quotient(a, b):
    """What a reported ratio must be: a ÷ b, or None where either timing is missing or not positive (a
    difference of two timings can come out <= 0 under load)."""
    return pytest.approx(a / b) if a is not None and b is not None and a > 0 and b > 0 else None


def test_per_step_covers_every_registered_sampler(bench):
    """The CLI's per-step section covers every registered sampler (read when the bench runs, so new
    registrations are picked up), whatever --samplers selects: each a finite difference of two step counts;
    NFE per step as each sampler is defined (adaptive: at most its bound); noise draws per step as
    each is defined; the ratios are the quotients they are named after."""
    out, payload = bench
    per_step = payload["per_step"]
    recs = {r["sampler"]: r for r in per_step["records"]}
    assert tuple(recs) == sampler_names() and len(recs) >= 16
    noise = per_step["noise"]
    assert 0 < noise["noise_step_min_s"] <= noise["noise_step_s"] <= noise["noise_step_max_s"], noise
    if bench_samplers.diffusers_available():  # the optional torch extra (CI does not install it)
        d = per_step["diffusers"]["ddim"]
        assert d["status"] == "ok" and set(d["by_threads"]) >= {"1"} and d["model_calls_per_step"] == 1.0, d
        assert recs["ddim"]["diffusers_step_s"] == d["step_s"] and "diffusers 0.42" in per_step["diffusers_status"]
    else:
        assert per_step["diffusers_status"].startswith("not measured") and per_step["diffusers"] == {}
    for name, r in recs.items():
        assert r["batch"] == 4 and r["shape"] == [8, 8, 1] and (r["steps_lo"], r["steps_hi"]) == (2, 130)
        assert r["finite"] and np.isfinite(r["step_s"]), r  # a difference of two timings: no sign asserted
        if get_sampler(name).adaptive:
            assert 0 < r["nfe_hi"] <= expected_nfe(name, 130), r
        else:
            assert r["step_nfe"] == (expected_nfe(name, 130) - expected_nfe(name, 2)) / 128, r
        draws = 0 if get_sampler(name).deterministic else DRAWS.get(name)
        if draws is not None:
            assert r["noise_draws_per_step"] == draws, r
        if name == "edm_stochastic":  # a draw on the steps with S_tmin <= σ/α <= S_tmax only
            assert 0 < r["noise_draws_per_step"] < 1, r
        assert r["stochastic"] == (r["noise_draws_per_step"] > 0) and r["noise_draws_known"]
        assert r["step_over_euler"] == _quotient(r["step_s"], recs["euler"]["step_s"])
        assert np.isfinite(r["noise_step_s"]) and r["noise_step_s"] > 0, r  # timed in this sampler's rounds
        noise_cost = r["noise_draws_per_step"] * r["noise_step_s"] if r["stochastic"] else None
        assert r["step_over_noise"] == _quotient(r["step_s"], noise_cost)
        assert "python_step_s" not in r and r["python_over_fused"] is None  # off in this run
    targets = [t for t in payload["targets"] if t["target"].startswith("per-step cost beyond the network")]
    assert set(targets[0]["measured"]) == {n for n, r in recs.items() if not r["stochastic"]}
    md = open(os.path.join(out, "samplers.md")).read()
    assert "Per-step cost beyond the network" in md and "| sampler | stochastic | NFE/step |" in md
    assert "PRNG implementations" in md and "| rbg |" in md


def test_padded_and_python_stepped_step_cost():
    """With a padded chain and the Python-stepped baseline: both compute the fused chain's numbers, the step
    cost is the marginal cost plus one unused slot's."""
    r = sampler_step_cost("euler", batch=4, shape=(8, 8, 1), steps=(2, 130), padding=8, repeats=3, min_total_s=0.0,
                          noise=False)
    assert r["python_max_abs_diff"] < 1e-5 and r["padded_max_abs_diff"] == 0.0, r
    # timings: finite only (their order is what the bench measures, not what a test may assert)
    assert all(np.isfinite(r[k]) for k in ("marginal_step_s", "python_step_s", "padding_s")), r
    assert r["step_s"] == pytest.approx(r["marginal_step_s"] + r["padding_s"])
    assert r["step_nfe"] == 1.0 and r["noise_draws_per_step"] == 0.0 and not r["stochastic"]


def _draw_8_of_16(impl, partitionable, draw_name):
    """The test's own check, on other batch sizes than the bench's 64 and 8: examples 8..15 as rows 8..15 of
    a batch of 16 and as a batch of 8 drawn from first index 8."""
    from gm_jax.bench.samplers import _prng_draws, threefry_partitionable

    draw = _prng_draws()[draw_name]
    with threefry_partitionable(partitionable):
        key = jax.random.key(3, impl=impl)
        big = jax.jit(lambda k: draw(k, 0, (16, 2, 3)))(key)
        small = jax.jit(lambda k: draw(k, 8, (8, 2, 3)))(key)
    return bool(np.array_equal(np.asarray(big)[8:], np.asarray(small)))


def test_prng_batch_size_independence(bench):
    """Every JAX key implementation is measured; the library's per-example threefry noise is independent of
    the batch size in both threefry modes; one draw over the whole batch is not (the check can fail); the
    rbg implementations' per-example (vmap) flags agree with the test's own check on other batch sizes."""
    _, payload = bench
    prng = payload["prng"]
    assert {r["impl"] for r in prng} == {"threefry2x32", "rbg", "unsafe_rbg"}
    threefry = [r for r in prng if r["impl"] == "threefry2x32" and r["draw"] == "per_example"]
    assert {r["threefry_partitionable"] for r in threefry} == {True, False}
    assert all(r["batch_independent"] for r in threefry)
    assert not next(r for r in prng if r["draw"] == "batched")["batch_independent"]
    assert sum(r["library_default"] for r in prng) == 1
    for r in prng:
        assert np.isfinite(r["draw_s"]) and r["draw_s"] > 0 and r["draw_over_default"] > 0, r
        if r["impl"] != "threefry2x32" and r["draw"] == "per_example":
            assert r["batch_independent"] == _draw_8_of_16(r["impl"], r["threefry_partitionable"], r["draw"]), r
    target = next(t for t in payload["targets"] if "PRNG" in t["target"])
    assert target["met"] is True


def test_interleaved_differences():
    """difference_per_unit of two interleaved calls recovers a known per-unit cost (a sleep)."""
    import time

    times = time_interleaved([lambda: time.sleep(0.001), lambda: time.sleep(0.006)], repeats=5)
    assert all(len(t["wall"]) == len(t["cpu"]) >= 5 for t in times)
    d = difference_per_unit(times[0], times[1], 5)
    assert 0.0008 < d["min_s"] < 0.0015 and 0.0005 < d["median_s"] < 0.002 and abs(d["cpu_s"]) < 0.0005


def test_diffusers_counterparts():
    """With the optional torch extra: every mapped diffusers scheduler exists in the installed diffusers,
    takes the mapped options and steps, calling the model as often as our sampler calls the denoiser; and
    diffusers' DDIM at η = 0 on the linear β grid ("trailing" timesteps) with ε = x/2 ends where our DDIM
    chain with the same ε ends (float32 tolerance): the two loops the bench compares compute the same thing."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    from gm_jax.diffusion.family import configured_sampler, model_defaults
    from gm_jax.diffusion.samplers import run_chain
    from gm_jax.diffusion.schedules import discrete_schedule, make_grid

    x_T = torch.randn((3, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    for name in bench_samplers.DIFFUSERS_SCHEDULERS:
        run, calls = bench_samplers.diffusers_loop(diffusers, torch, name, x_T)
        x = run(4)
        assert x.shape == x_T.shape and bool(torch.isfinite(x).all()), name
        assert calls[4] == expected_nfe(name, 4), (name, calls)
    n = 10
    run, _ = bench_samplers.diffusers_loop(diffusers, torch, "ddim", x_T)
    theirs = run(n).numpy().transpose(0, 2, 3, 1)
    grid = make_grid("discrete", discrete_schedule("linear", 1000), n, n)
    eps_half = lambda x, t, alpha, sigma: (x - sigma * 0.5 * x) / alpha  # x̂_0 of ε = x/2
    chain = configured_sampler(model_defaults(), "ddim").chain(eps_half, jax.random.key(0),
                                                               jnp.asarray(x_T.numpy().transpose(0, 2, 3, 1)),
                                                               grid, 0, eta=0.0)
    ours = np.asarray(run_chain(chain, grid)[0])
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5)
    assert np.abs(theirs).max() > 1e-2  # not two vanishing samples
