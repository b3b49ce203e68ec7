"""Benchmark outputs: JSON, Markdown tables, PNG plots (matplotlib, Agg) and the issue-5 and issue-18 target
check."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any


def write_json(path: str, payload: dict[str, Any]) -> str:
    """Write ``payload`` atomically as indented JSON (NaN written as null)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(u) for k, u in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(u) for u in v]
        return v

    with open(path + ".tmp", "w") as f:
        json.dump(clean(payload), f, indent=1)
    os.replace(path + ".tmp", path)
    return path


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan"
        if v != 0 and (abs(v) >= 1e4 or abs(v) < 10 ** -(digits - 1)):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(v)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows`` with ``columns`` = (field, header) pairs."""
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k, _ in columns) + " |")
    return "\n".join(lines)


SAMPLER_COLUMNS = [("net", "network"), ("batch", "batch"), ("sampler", "sampler"), ("steps", "steps"),
                   ("nfe", "NFE"), ("compile_s", "compile s"), ("wall_ms", "wall ms"),
                   ("samples_per_s", "samples/s"), ("forward_ms", "forward ms"),
                   ("overhead_ratio", "overhead"), ("overhead_ratio_min", "overhead (min)"),
                   ("overhead_ratio_cpu", "overhead (CPU time)"), ("overhead_ratio_call", "overhead (per-call fwd)"),
                   ("python_wall_ms", "Python-stepped ms"), ("fused_speedup", "fused speed-up"),
                   ("fused_speedup_cpu", "fused speed-up (CPU time)"),
                   ("recompiles", "recompiles")]
QUALITY_COLUMNS = [("sampler", "sampler"), ("steps", "steps"), ("nfe", "NFE"), ("sw2_true", "SW2 to mixture"),
                   ("sw2_true_se", "± s.e."), ("sw2_true_diff_vs_ref", "− DDPM-1000 (paired)"),
                   ("sw2_true_diff_vs_ref_se", "± s.e."), ("sw2_true_debiased", "SW2 floor-corrected"),
                   ("sliced_w2", "two-sample SW2"), ("mmd2", "MMD²")]
FID_COLUMNS = [("sampler", "sampler"), ("steps", "steps"), ("nfe", "NFE"), ("fid", "FID"), ("num", "samples"),
               ("train_step", "train step")]
TRAIN_COLUMNS = [("config", "config"), ("family", "family"), ("batch", "batch"), ("dtype", "dtype"),
                 ("steps_per_call", "steps/call"), ("devices", "devices"), ("compile_s", "compile s"),
                 ("step_ms", "ms/step"), ("images_per_s", "images/s"), ("images_per_cpu_s", "images/CPU-s"),
                 ("speedup_vs_1", "× vs 1 step/call"), ("speedup_vs_1_cpu", "× (CPU time)"),
                 ("speedup_vs_float32_cpu", "bf16 ÷ f32 (CPU time)"),
                 ("jax_over_torch_cpu", "gm_jax ÷ PyTorch (CPU time)"),
                 ("loss_max_abs_diff_vs_1dev", "loss diff vs 1 device"), ("status", "status")]


PER_STEP_COLUMNS = [("sampler", "sampler"), ("stochastic", "stochastic"), ("step_nfe", "NFE/step"),
                    ("noise_draws_per_step", "draws/step"), ("step_us", "µs/step"),
                    ("marginal_step_us", "marginal µs/step"), ("padding_us", "µs/unused slot"),
                    ("step_cpu_us", "µs/step (CPU time)"), ("step_over_euler", "÷ Euler"),
                    ("noise_step_us", "one draw µs"),
                    ("step_over_noise", "÷ its noise"), ("step_over_one_draw", "÷ one draw"),
                    ("python_step_us", "Python-stepped µs/step"), ("python_over_fused", "Python ÷ fused"),
                    ("diffusers_step_us", "diffusers µs/step"), ("fused_over_diffusers", "fused ÷ diffusers"),
                    ("diffusers_threads", "diffusers threads"), ("diffusers_1thread_step_us", "diffusers 1 thread"),
                    ("diffusers_all_threads_step_us", "diffusers all threads"),
                    ("diffusers_noise_draw_us", "torch draw µs")]
PRNG_COLUMNS = [("impl", "key impl"), ("threefry_partitionable", "threefry partitionable"), ("draw", "draw"),
                ("batch_independent", "batch-size independent"), ("draw_us", "µs/draw"),
                ("draw_cpu_us", "µs/draw (CPU time)"), ("draw_over_default", "÷ library default"),
                ("library_default", "library default")]


def with_us(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of records with every ``*_s`` field that is a number also in microseconds (``*_us``)."""
    out = []
    for r in records:
        r = dict(r)
        for k, v in list(r.items()):
            if k.endswith("_s") and isinstance(v, (int, float)) and not isinstance(v, bool):
                r[k[:-2] + "_us"] = 1e6 * v
        out.append(r)
    return out


def per_step_markdown(per_step: dict[str, Any], prng: Sequence[dict[str, Any]]) -> list[str]:
    """The Markdown lines of issue 18's sections: per-step cost beyond the network, and the PRNG
    implementations for per-example noise (nothing when neither was measured)."""
    md: list[str] = []
    if per_step.get("records"):
        r0, noise = per_step["records"][0], per_step["noise"]
        md += ["", f"Per-step cost beyond the network: negligible denoiser (x̂_0 = x/2) at batch {r0['batch']} × "
               f"{' × '.join(str(v) for v in r0['shape'])}, the difference of {r0['steps_hi']} and {r0['steps_lo']} "
               f"steps in one compiled chain (least-disturbed calls of interleaved rounds) plus one unused slot of "
               f"the static grid ({r0['padding']} padded slots timed); one step's per-example noise draw, timed in "
               f"each sampler's rounds: median {1e6 * noise['noise_step_s']:.1f} µs (range "
               f"{1e6 * noise['noise_step_min_s']:.1f}–{1e6 * noise['noise_step_max_s']:.1f}; CPU time "
               f"{1e6 * noise['noise_step_cpu_s']:.1f} µs); "
               f"diffusers: {per_step.get('diffusers_status', 'off')}.", "",
               markdown_table(with_us(per_step["records"]), PER_STEP_COLUMNS)]
    if prng:
        md += ["", f"PRNG implementations for per-example noise [{prng[0]['batch']}, "
               f"{', '.join(str(v) for v in prng[0]['shape'])}] (one draw per step of a compiled chain; "
               "batch-size independent: example i identical in a batch of 64 and in batches of 8):", "",
               markdown_table(with_us(prng), PRNG_COLUMNS)]
    return md


def per_step_targets(per_step: dict[str, Any], prng: Sequence[dict[str, Any]], deterministic_s: float = 10e-6,
                     noise_ratio: float = 1.1) -> list[dict[str, Any]]:
    """Where the run stands on issue 18: per-step cost beyond the network ≤ 10 µs for deterministic
    samplers; for stochastic ones ≤ 1.1 × that step's noise draw and ≤ diffusers' per-step cost; per-example
    noise independent of the batch size with the library's key implementation."""
    recs = per_step.get("records") or []
    if not recs:
        return []
    at = f"batch {recs[0]['batch']} × {' × '.join(str(v) for v in recs[0]['shape'])}"
    det = {r["sampler"]: r["step_s"] for r in recs if not r["stochastic"]}
    sto = {r["sampler"]: r["step_over_noise"] for r in recs if r["stochastic"]}
    vs = {r["sampler"]: r["fused_over_diffusers"] for r in recs if r["stochastic"] and r.get("fused_over_diffusers")}
    out = [{"target": f"per-step cost beyond the network <= {1e6 * deterministic_s:g} µs for deterministic samplers "
                      f"({at})", "met": all(v <= deterministic_s for v in det.values()),
            "measured": {k: round(1e6 * v, 2) for k, v in det.items()}},
           {"target": f"stochastic samplers: per-step cost <= {noise_ratio} × that step's noise draw ({at})",
            "met": all(v <= noise_ratio for v in sto.values()), "measured": {k: round(v, 3) for k, v in sto.items()}},
           {"target": "stochastic samplers: per-step cost <= diffusers' per-step cost on this machine",
            "met": all(v <= 1.0 for v in vs.values()) if vs else None,
            "measured": {k: round(v, 3) for k, v in vs.items()} or per_step.get("diffusers_status")}]
    if prng:
        default = [r for r in prng if r["library_default"]]
        fastest = min((r for r in prng if r["batch_independent"]), key=lambda r: r["draw_s"], default=None)
        out.append({"target": "per-example noise independent of the batch size with the library's PRNG",
                    "met": bool(default and default[0]["batch_independent"]),
                    "measured": {f"{r['impl']}/{r['draw']}/partitionable={r['threefry_partitionable']}":
                                 {"independent": r["batch_independent"], "draw_over_default": r["draw_over_default"]}
                                 for r in prng},
                    "fastest_independent": fastest and f"{fastest['impl']}/{fastest['draw']}/partitionable="
                                                       f"{fastest['threefry_partitionable']}"})
    return out


def with_ms(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of sampler records with the ``*_s`` times also in milliseconds."""
    out = []
    for r in records:
        r = dict(r)
        for k in ("wall", "forward", "python_wall", "step"):
            if r.get(f"{k}_s") is not None:
                r[f"{k}_ms"] = 1e3 * r[f"{k}_s"]
        out.append(r)
    return out


def sampler_targets(timing: Sequence[dict[str, Any]], quality: Sequence[dict[str, Any]],
                    target_overhead: float = 1.03, nfe_budget: int = 20) -> list[dict[str, Any]]:
    """Where the run stands on issue 5's sampler targets: overhead ≤ 1.03 at batch 64 on a U-Net, zero
    recompilations, and the best sampler with the exact score reaching DDPM-1000's distance in ≤ 20 NFE."""
    out = []
    u64 = [r for r in timing if r["net"].startswith("unet") and r["batch"] == 64]
    if u64:
        worst: dict[str, float] = {}
        worst_min: dict[str, float] = {}
        worst_cpu: dict[str, float] = {}
        for r in u64:
            worst_cpu[r["sampler"]] = max(worst_cpu.get(r["sampler"], 0.0), r.get("overhead_ratio_cpu", 0.0))
            worst[r["sampler"]] = max(worst.get(r["sampler"], 0.0), r["overhead_ratio"])
            worst_min[r["sampler"]] = max(worst_min.get(r["sampler"], 0.0), r["overhead_ratio_min"])
        out.append({"target": f"overhead ratio <= {target_overhead} for every sampler at batch 64 (U-Net)",
                    "met": all(v <= target_overhead for v in worst.values()),
                    "measured": {k: round(v, 3) for k, v in sorted(worst.items())},
                    "measured_min_times": {k: round(v, 3) for k, v in sorted(worst_min.items())},
                    "measured_cpu_time": {k: round(v, 3) for k, v in sorted(worst_cpu.items())},
                    "nets": sorted({r["net"] for r in u64})})
    else:
        out.append({"target": f"overhead ratio <= {target_overhead} at batch 64 (U-Net)", "met": None,
                    "measured": "no U-Net record at batch 64 in this run"})
    if timing:
        rec = sum(r["recompiles"] for r in timing) + sum(r["backend_compiles_on_change"] for r in timing)
        out.append({"target": "0 recompilations when steps / eta / guidance change", "met": rec == 0,
                    "measured": rec, "configurations": len({(r["net"], r["batch"], r["sampler"]) for r in timing})})
    ref = [q for q in quality if q.get("reference")]
    if ref:
        key = "sw2_true" if ref[0].get("sw2_true") is not None else "sliced_w2"
        ref_d = ref[0][key]
        cands = [q for q in quality if 0 < q["nfe"] <= nfe_budget and q.get(key) is not None
                 and math.isfinite(q[key])]
        best = min(cands, key=lambda q: q[key]) if cands else None
        floor = [q for q in quality if q["nfe"] == 0]
        fields = ("sampler", "steps", "nfe", key, "sw2_true_se", "sw2_true_diff_vs_ref", "sw2_true_diff_vs_ref_se")
        rec = {"target": f"exact score: best sampler reaches DDPM-1000's sliced W2 in <= {nfe_budget} NFE",
               "met": bool(best and best[key] <= ref_d), "metric": key,
               "measured": {"ddpm_1000": ref_d, "ddpm_1000_se": ref[0].get("sw2_true_se"),
                            "best": best and {k: best.get(k) for k in fields},
                            "floor_exact_draws": floor[0][key] if floor else None,
                            "seeds": ref[0].get("seeds", 1), "num": ref[0].get("num")}}
        diff_se = best.get("sw2_true_diff_vs_ref_se") if best else None
        if diff_se is not None:
            # resolved: the paired difference is more than 2 standard errors away from 0 (either way)
            rec["resolved"] = abs(best["sw2_true_diff_vs_ref"]) > 2 * diff_se
        out.append(rec)
    return out


def _sampler_styles() -> dict[str, tuple[str, str]]:
    """(colour, marker) of each registered sampler, by registration order."""
    from gm_jax.diffusion.samplers import sampler_names

    markers = "os^vDPXh*<>p"
    return {name: (f"C{i % 10}", markers[i % len(markers)]) for i, name in enumerate(sampler_names())}


def plot_time_vs_nfe(records: Sequence[dict[str, Any]], path: str) -> str:
    """Wall time per batch against NFE, one panel per network × batch, one series per sampler, with the
    physical limit NFE × forward time as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["net"], r["batch"]) for r in records})
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    styles = _sampler_styles()
    for ax, (net, batch) in zip(axes[0], groups, strict=True):
        rs = [r for r in records if r["net"] == net and r["batch"] == batch]
        for s in sorted({r["sampler"] for r in rs}):
            pts = sorted((r["nfe"], r["wall_s"], r.get("python_wall_s")) for r in rs if r["sampler"] == s)
            color, marker = styles.get(s, ("k", "o"))
            ax.plot([p[0] for p in pts], [1e3 * p[1] for p in pts], marker=marker, color=color, label=s, ms=4)
            if pts[0][2] is not None:
                ax.plot([p[0] for p in pts], [1e3 * p[2] for p in pts], marker=marker, color=color, ls=":",
                        ms=3, alpha=0.6)
        nfes = sorted({r["nfe"] for r in rs})
        fwd = min(r["forward_s"] for r in rs)
        ax.plot(nfes, [1e3 * n * fwd for n in nfes], "k--", lw=1, label="NFE × forward")
        _plain_log_x(ax)
        ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_ylabel("ms per batch")
        ax.set_title(f"{net}, batch {batch}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=6, title="solid: fused; dotted: Python-stepped", title_fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def plot_quality_vs_nfe(quality: Sequence[dict[str, Any]], path: str, fid: Sequence[dict[str, Any]] = ()) -> str:
    """Sliced W2 to the true mixture against NFE per sampler (exact score), DDPM-1000 and the exact-draws
    floor as horizontal lines; a second panel with FID against NFE when ``fid`` records are given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = int(bool(quality)) + int(bool(fid))
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(5.2 * max(panels, 1), 3.8), squeeze=False)
    styles = _sampler_styles()
    if quality:
        _quality_panel(axes[0][0], quality, styles)
    if fid:
        ax = axes[0][panels - 1]
        for s in sorted({q["sampler"] for q in fid}):
            pts = sorted((q["nfe"], q["fid"]) for q in fid if q["sampler"] == s)
            color, marker = styles.get(s, ("k", "o"))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=s, ms=4)
        _plain_log_x(ax)
        ax.set_xlabel("NFE")
        ax.set_ylabel("FID (fashion_mnist_cnn features)")
        ax.set_title(f"trained Fashion-MNIST DDPM, step {fid[0]['train_step']}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def _quality_panel(ax: Any, quality: Sequence[dict[str, Any]], styles: dict[str, tuple[str, str]]) -> None:
    key = "sw2_true" if quality and quality[0].get("sw2_true") is not None else "sliced_w2"
    body = [q for q in quality if q["nfe"] > 0 and not q.get("reference") and q.get(key) is not None]
    for s in sorted({q["sampler"] for q in body}):
        pts = sorted((q["nfe"], q[key], q.get("sw2_true_se") or 0.0) for q in body if q["sampler"] == s)
        color, marker = styles.get(s, ("k", "o"))
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker=marker,
                    color=color, label=s, ms=4, capsize=2)
    for q in quality:
        if q.get("reference"):
            ax.axhline(q[key], color="k", ls="--", lw=1, label=f"ddpm, {q['steps']} steps")
        elif q["nfe"] == 0:
            ax.axhline(q[key], color="gray", ls=":", lw=1, label="exact draws (floor)")
    _plain_log_x(ax)
    ax.set_yscale("log")
    ax.set_xlabel("NFE")
    seeds = quality[0].get("seeds", 1) if quality else 1
    ax.set_ylabel("sliced W2 to the true mixture" if key == "sw2_true" else "sliced W2 to exact draws")
    ax.set_title(f"exact score of a 2-D Gaussian mixture ({quality[0]['num']} samples × {seeds} seeds)"
                 if quality else "", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6)


def _plain_log_x(ax: Any) -> None:
    """Log-scaled x axis labelled with plain numbers (NFE)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig: Any, path: str) -> str:
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
