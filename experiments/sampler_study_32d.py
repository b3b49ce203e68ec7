"""Issue 18's 32-D study: sliced W2 to the mixture itself against NFE for every registered sampler, driven by
the exact score, with the Monte-Carlo floor of exact draws; then why the curves stall (starting law,
grid, stochasticity). Writes ``OUT/study_32d.json``, ``OUT/study_32d.md`` (tables) and
``OUT/study_32d.png`` (ratio to the floor against NFE).

    python experiments/sampler_study_32d.py --out runs/study_32d            # about 40 CPU-minutes
    python experiments/sampler_study_32d.py --out /tmp/s --quick            # about 1 CPU-minute, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import time

from gm_jax.bench.mixture_study import StudyConfig, distance_vs_nfe
from gm_jax.diffusion.samplers import sampler_names

FOCUS = ("euler", "dpm_solver_2m", "deis", "lms", "unipc")
VARIANTS = {
    "edm_stochastic churn 10": {"sampler": "edm_stochastic", "options": {"s_churn": 10.0}},
    "edm_stochastic churn 80": {"sampler": "edm_stochastic", "options": {"s_churn": 80.0}},
    "restart k=1": {"sampler": "restart", "options": {"restart_k": 1}},
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num", type=int, default=20000, help="samples per run")
    p.add_argument("--seeds", type=int, default=6, help="seeds per point (common random numbers)")
    p.add_argument("--floor_seeds", type=int, default=24, help="seeds of the floor of exact draws")
    p.add_argument("--projections", type=int, default=32, help="fixed random directions of the sliced W2")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2000 samples, 2 seeds, few samplers")
    return p.parse_args(argv)


def sections(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """(title, keyword arguments of distance_vs_nfe) of each part of the study."""
    base = StudyConfig(num=args.num, seeds=args.seeds, projections=args.projections,
                       budgets=(5, 10, 20, 50, 100, 200))
    focus_budgets = (10, 20, 200)
    import dataclasses

    narrow = dataclasses.replace(base, budgets=focus_budgets)
    return [
        ("every sampler, EDM grid on the VP SDE, N(0, σ₀²I) start",
         {"samplers": sampler_names(), "cfg": base, "variants": VARIANTS}),
        ("starting law: moments matched, exact marginal", {"samplers": FOCUS, "cfg": narrow,
                                                            "priors": ("moment_matched", "exact")}),
        ("grid: DDPM's trailing index grid (linear β, T = 1000)",
         {"samplers": FOCUS, "cfg": dataclasses.replace(narrow, grid="discrete")}),
    ]


def quick_sections() -> list[tuple[str, dict]]:
    cfg = StudyConfig(num=2000, seeds=2, projections=16, budgets=(5, 20), max_steps=20)
    return [("quick", {"samplers": ("euler", "dpm_solver_2m", "dopri5"), "cfg": cfg,
                       "priors": ("gaussian", "exact"), "tolerances": (1e-2,)})]


def table(result: dict) -> str:
    """Markdown: one row per (label, prior, grid), ratio ± SE per NFE."""
    rows: dict[tuple, list[str]] = {}
    for r in result["records"]:
        se = f" ± {r['ratio_se']:.2f}" if r["ratio_se"] is not None else ""
        rows.setdefault((r["label"], r["prior"], r["grid"]), []).append(f"{r['nfe']}: {r['ratio']:.2f}{se}")
    lines = ["| sampler | start | grid | NFE: SW2 / floor |", "|---|---|---|---|"]
    lines += [f"| {k[0]} | {k[1]} | {k[2]} | {' · '.join(v)} |" for k, v in rows.items()]
    return "\n".join(lines)


def plot(results: list[tuple[str, dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    main = results[0][1]
    for label in dict.fromkeys(r["label"] for r in main["records"]):
        pts = [(r["nfe"], r["ratio"]) for r in main["records"] if r["label"] == label]
        ax.plot(*zip(*sorted(pts), strict=True), marker="o", ms=3, label=label)
    ax.axhline(1.0, color="k", lw=1, ls="--", label="exact draws (floor)")
    ax.axhline(1.1, color="k", lw=0.5, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="sliced W2 to the mixture / floor",
           title=f"{main['dim']}-D mixture, exact score, {main['config']['num']} samples")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.makedirs(args.out, exist_ok=True)
    t0, c0 = time.time(), time.process_time()
    results = []
    for title, kw in (quick_sections() if args.quick else sections(args)):
        print(f"== {title}", flush=True)
        floor_seeds = None if args.quick else args.floor_seeds
        res = distance_vs_nfe(floor_seeds=floor_seeds, progress=lambda s: print("  ", s, flush=True), **kw)
        res["title"] = title
        results.append((title, res))
    summary = {"wall_s": time.time() - t0, "cpu_s": time.process_time() - c0, "sections": [r for _, r in results]}
    with open(os.path.join(args.out, "study_32d.json"), "w") as f:
        json.dump(summary, f, indent=1)
    md = [f"## {t}\n\nfloor (SW2 of exact draws): {r['floor']['mean']:.4f} ± {r['floor']['se']:.4f}\n\n{table(r)}\n"
          for t, r in results]
    with open(os.path.join(args.out, "study_32d.md"), "w") as f:
        f.write("\n".join(md))
    plot(results, os.path.join(args.out, "study_32d.png"))
    print("\n".join(md))
    print(f"wall {summary['wall_s']:.0f} s, CPU {summary['cpu_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
