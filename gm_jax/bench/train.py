"""Training-throughput benchmark: images (examples) per second of each family's compiled training step
(:func:`gm_jax.train.loop.make_train_step`, the loop's own step), one step per call against k steps fused
in one ``lax.scan``, float32 against bfloat16 where a family has a dtype field, and data-parallel
scaling over devices (on simulated CPU devices this checks correctness — the losses equal one device's —
not speed: the simulated devices share the same cores).

images/s = global batch × k ÷ median wall time of one compiled call (after warm-up), the batches already
on the device: the input pipeline is not timed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from gm_jax.bench.timing import compile_seconds, time_call
from gm_jax.core.errors import GmJaxError, require
from gm_jax.train import sharding as shd

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "experiments", "configs")
# One default config per family (the CPU-sized DDPM for diffusion); full mode adds the rest.
QUICK_CONFIGS = ("vae.py", "ddpm_fashion_mnist_cpu.py", "gan_eight_gaussians.py", "flow_matching_moons.py",
                 "realnvp_two_moons.py")
FULL_CONFIGS = ("vae.py", "vae_fashion_mnist.py", "ddpm_fashion_mnist_cpu.py", "ddpm_fashion_mnist.py",
                "gan_eight_gaussians.py", "dcgan_fashion_mnist.py", "flow_matching_moons.py",
                "realnvp_two_moons.py", "ncsn_toy.py", "gmm_two_moons.py", "vqvae_fashion_mnist.py",
                "pixelcnn_binarized_mnist.py", "rbm_binarized_mnist.py", "vae_binarized_mnist.py")
# Quick mode: image sets cut to a few hundred examples (loading only; the step is the config's own).
QUICK_OVERRIDES = ("--config.data.num_examples=512",)


def load_bench_config(name: str, overrides: Sequence[str] = ()) -> Any:
    """``experiments/configs/NAME`` (or a path) with ``--config.FIELD=VALUE`` overrides."""
    from gm_jax.train.config import apply_overrides, load_config_file

    path = name if os.path.exists(name) else os.path.join(CONFIG_DIR, name)
    require(os.path.exists(path), f"no config {name!r} (looked in {CONFIG_DIR})")
    return apply_overrides(load_config_file(path), list(overrides))


def _setup(config: Any, num_devices: int) -> tuple[Any, Any, Any]:
    from gm_jax.data.pipeline import make_pipeline
    from gm_jax.train.families import build_family

    mesh = shd.make_mesh(jax.devices()[:num_devices])
    shd.check_batch_size(int(config.data.batch_size), mesh)
    pipeline = make_pipeline(config.data, config.seed, 0, 1)
    return build_family(config, pipeline.spec), pipeline, mesh


def _batches(pipeline: Any, mesh: Any, k: int) -> Any:
    if k == 1:
        return shd.to_global(pipeline.batch(0), mesh)
    stacked = [pipeline.batch(s) for s in range(k)]
    return shd.to_global({key: np.stack([b[key] for b in stacked]) for key in stacked[0]}, mesh, leading_axes=1)


def measure_step(config: Any, steps_per_call: int = 1, num_devices: int = 1, repeats: int = 3,
                 min_total_s: float = 0.5) -> dict[str, Any]:
    """Compile time and steady-state throughput of the family's training step for ``config``, with
    ``steps_per_call`` steps fused per compiled call, data-parallel over the first ``num_devices`` devices.
    Also returns the losses of the first two calls from the initial state (for the scaling check)."""
    from gm_jax.train.loop import make_train_step
    from gm_jax.train.workdir import init_state

    family, pipeline, mesh = _setup(config, num_devices)
    batch = _batches(pipeline, mesh, steps_per_call)
    state = init_state(family, int(config.seed), _batches(pipeline, mesh, 1), mesh)
    step = make_train_step(family, mesh, steps_per_call)  # k > 1 on CPU: the scan fully unrolled (see there)
    _, compile_s = compile_seconds(step, state, batch)
    holder = {"state": state}
    losses: list[float] = []

    def call() -> Any:
        holder["state"], metrics = step(holder["state"], batch)
        return metrics

    # the losses of the first two steps from the initial state (batches 0 and 1), for the invariants
    # "k fused steps = k single steps" and "n devices = 1 device"
    if steps_per_call == 1:
        second = shd.to_global(pipeline.batch(1), mesh)
        for b in (batch, second):
            holder["state"], metrics = step(holder["state"], b)
            key = "loss" if "loss" in metrics else sorted(metrics)[0]
            losses.append(float(np.asarray(metrics[key])[0]))
    else:
        metrics = jax.block_until_ready(call())
        key = "loss" if "loss" in metrics else sorted(metrics)[0]
        losses += [float(v) for v in np.asarray(metrics[key])[:2]]
    timing = time_call(call, repeats=repeats, warmup=0, min_total_s=min_total_s)
    b = int(config.data.batch_size)
    return {"family": family.name, "batch": b, "steps_per_call": steps_per_call, "devices": num_devices,
            "compile_s": compile_s, "call_s": timing["median_s"], "step_s": timing["median_s"] / steps_per_call,
            "images_per_s": b * steps_per_call / timing["median_s"], "repeats": timing["repeats"],
            "call_cpu_s": timing["cpu_median_s"], "images_per_cpu_s": b * steps_per_call / timing["cpu_median_s"],
            "first_losses": losses, "loss_metric": key,
            "scan_unrolled": steps_per_call > 1 and mesh.devices.flat[0].platform == "cpu"}


def _has_dtype(config: Any) -> bool:
    return "dtype" in config.model


def bench_train(configs: Sequence[str], k: int = 8, repeats: int = 3, overrides: Sequence[str] = (),
                scaling_configs: Sequence[str] = (), device_counts: Sequence[int] = (1, 2, 8),
                min_time: float = 0.5, log: Any = print, bfloat16: bool = True) -> list[dict[str, Any]]:
    """Records per config: float32 at 1 and k steps per call on one device; with ``bfloat16``, bfloat16
    compute (parameters float32) at 1 step per call where the family has ``model.dtype`` (else a record
    saying it is unsupported); for ``scaling_configs``, 1 step per call over each device count with its
    loss difference to one device."""
    records: list[dict[str, Any]] = []
    for name in configs:
        t0 = time.perf_counter()
        try:
            config = load_bench_config(name, overrides)
        except GmJaxError as e:
            records.append({"config": name, "status": f"error: {e}"})
            continue
        base = {"config": name, "dtype": "float32", "status": "ok"}
        try:
            one = {**base, **measure_step(config, 1, 1, repeats, min_time)}
            fused = {**base, **measure_step(config, k, 1, repeats, min_time)}
        except (GmJaxError, OSError) as e:  # e.g. a dataset that is not prepared on this machine
            records.append({"config": name, "status": f"error: {str(e).splitlines()[0][:160]}"})
            log(f"bench train: {name}: {records[-1]['status']}")
            continue
        one["speedup_vs_1"] = one["speedup_vs_1_cpu"] = 1.0
        fused["speedup_vs_1"] = fused["images_per_s"] / one["images_per_s"]
        fused["speedup_vs_1_cpu"] = fused["images_per_cpu_s"] / one["images_per_cpu_s"]
        fused["loss_max_abs_diff_vs_single_steps"] = float(np.max(np.abs(np.subtract(fused["first_losses"],
                                                                                     one["first_losses"]))))
        records += [one, fused]
        if bfloat16 and _has_dtype(config):
            cfg = config.copy_and_resolve_references()
            cfg.model.dtype = "bfloat16"
            bf = {**base, **measure_step(cfg, 1, 1, repeats, min_time), "dtype": "bfloat16"}
            bf["speedup_vs_float32"] = bf["images_per_s"] / one["images_per_s"]
            bf["speedup_vs_float32_cpu"] = bf["images_per_cpu_s"] / one["images_per_cpu_s"]
            bf["loss_rel_diff_vs_float32"] = float(np.max(np.abs(np.subtract(bf["first_losses"], one["first_losses"]))
                                                         / np.maximum(np.abs(one["first_losses"]), 1e-12)))
            records.append(bf)
            log(f"bench train: {name}: bfloat16 {bf['images_per_s']:.0f} images/s "
                f"(x{bf['speedup_vs_float32']:.2f} of float32, CPU time x{bf['speedup_vs_float32_cpu']:.2f})")
        elif bfloat16:
            records.append({"config": name, "family": one["family"], "dtype": "bfloat16", "status": "unsupported",
                            "note": "the family has no model.dtype field; its networks compute in float32"})
        if name in scaling_configs:
            for n in device_counts:
                if n > jax.device_count() or n == 1:
                    continue
                if int(config.data.batch_size) % n:
                    continue
                rec = {**base, **measure_step(config, 1, n, repeats, min_time)}
                rec["loss_max_abs_diff_vs_1dev"] = float(np.max(np.abs(np.subtract(rec["first_losses"],
                                                                                   one["first_losses"]))))
                rec["note"] = ("simulated CPU devices: correctness only, not speed" if jax.devices()[0].platform
                               == "cpu" else "")
                rec["speedup_vs_1"] = None
                records.append(rec)
            one["loss_max_abs_diff_vs_1dev"] = 0.0
        log(f"bench train: {name}: {one['images_per_s']:.0f} images/s at 1 step/call, "
            f"{fused['images_per_s']:.0f} at {k} fused (x{fused['speedup_vs_1']:.2f}) "
            f"[{time.perf_counter() - t0:.0f} s]")
    return records


TORCH_CONFIG = "ddpm_fashion_mnist_cpu.py"


def torch_comparison(run: bool = False, records: Sequence[dict[str, Any]] = (), overrides: Sequence[str] = (),
                     repeats: int = 3, min_total_s: float = 0.5, config_name: str = TORCH_CONFIG,
                     threads: int = 0) -> dict[str, Any]:
    """The optional PyTorch row: the same U-Net (equal parameter count, asserted), batch, ε-prediction loss,
    clipping, Adam and EMA in PyTorch on CPU (:mod:`gm_jax.bench.torch_twin`), with the ratio gm_jax ÷
    PyTorch images/s of one step per call (the JAX number from ``records`` when it has the config, else
    measured here). Only with ``run`` and when ``import torch`` works; otherwise a row saying why not."""
    from gm_jax.bench.torch_twin import bench_torch_diffusion, torch_available, twin_forward_diff

    if not torch_available():
        return {"config": "pytorch", "status": "skipped",
                "note": "PyTorch is not installed (optional extra: pip install -e '.[torch]', CPU build "
                        "torch==2.13.0)"}
    if not run:
        return {"config": "pytorch", "status": "skipped", "note": "torch is importable; pass --torch to run the twin"}
    from gm_jax.diffusion.family import build_network

    config = load_bench_config(config_name, overrides)
    _, pipeline, _ = _setup(config, 1)
    spec = pipeline.spec
    ncls = int(spec.num_classes or 0) if config.model.class_conditional else 0
    net = build_network(config.model, spec, ncls)
    x1 = np.zeros((1,) + tuple(spec.shape), np.float32)
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), x1, np.zeros((1,), np.float32),
                                             np.zeros((1,), np.int32) if ncls else None))
    jax_params = int(sum(np.prod(p.shape) for p in jax.tree.leaves(shapes["params"])))
    batch = pipeline.batch(0)
    lo, hi = (float(v) for v in spec.value_range)
    x = 2.0 * (np.asarray(batch["x"], np.float32) - lo) / (hi - lo) - 1.0
    rec = bench_torch_diffusion(config, jax_params, x, batch.get("label") if ncls else None, ncls, repeats,
                                min_total_s, threads)
    rec["torch_config"] = config_name
    kwargs = {f: getattr(net, f) for f in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "num_classes",
                                           "num_heads", "out_channels")}
    rec["twin_forward_max_abs_diff"] = twin_forward_diff(kwargs, tuple(spec.shape))
    jax_rows = [r for r in records if r.get("config") == config_name and r.get("status") == "ok"
                and r.get("steps_per_call") == 1 and r.get("devices") == 1 and r.get("dtype") == "float32"]
    jax_rec = jax_rows[0] if jax_rows else measure_step(config, 1, 1, repeats, min_total_s)
    rec["jax_images_per_s"] = jax_rec["images_per_s"]
    rec["jax_images_per_cpu_s"] = jax_rec["images_per_cpu_s"]
    rec["jax_over_torch"] = jax_rec["images_per_s"] / rec["images_per_s"]
    rec["jax_over_torch_cpu"] = jax_rec["images_per_cpu_s"] / rec["images_per_cpu_s"]
    rec["note"] = (f"same U-Net ({jax_params} parameters in both; forward max |diff| with copied weights "
                   f"{rec['twin_forward_max_abs_diff']:.1e}), batch {rec['batch']}, ε-MSE + clip + Adam + EMA; "
                   f"torch {rec['torch_version']} with {rec['torch_threads']} thread(s)")
    return rec


def train_targets(records: Sequence[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Issue 5's training targets: fused ≥ 1.2× one step per call for the small net; ≥ 1.0× PyTorch."""
    rows = [r for r in records if r.get("status") == "ok" and r.get("steps_per_call") == k and r.get("devices") == 1]
    fused = {r["config"]: r["speedup_vs_1"] for r in rows}
    small = [v for c, v in fused.items() if "ddpm" in c and "cpu" in c]
    out = [{"target": f"fused ({k} steps/call) >= 1.2x images/s of 1 step/call for the small net "
                      "(tiny U-Net DDPM)", "met": (min(small) >= 1.2) if small else None,
            "measured": {c: round(v, 3) for c, v in fused.items()},
            "measured_cpu_time": {r["config"]: round(r["speedup_vs_1_cpu"], 3) for r in rows}}]
    torch_rows = [r for r in records if r.get("config") == "pytorch"]
    if torch_rows and torch_rows[0].get("status") == "ok":
        t = torch_rows[0]
        out.append({"target": ">= 1.0x PyTorch CPU on the same net", "met": t["jax_over_torch"] >= 1.0,
                    "measured": round(t["jax_over_torch"], 3), "measured_cpu_time": round(t["jax_over_torch_cpu"], 3),
                    "net": t["torch_config"], "torch_threads": t["torch_threads"]})
    else:
        out.append({"target": ">= 1.0x PyTorch CPU on the same net", "met": None,
                    "measured": torch_rows[0]["note"] if torch_rows else "not run"})
    return out
