"""Issue 18's 32-D study: sliced W2 to the mixture itself against NFE for every registered sampler, driven by
the exact score, with the Monte-Carlo floor of exact draws; then why the curves stall (starting law,
grid, stochasticity). Writes ``OUT/study_32d.json``, ``OUT/study_32d.md`` (tables) and
``OUT/study_32d.png`` (ratio to the floor against NFE).

    python experiments/sampler_study_32d.py --out runs/study_32d            # about 35 CPU-minutes
    python experiments/sampler_study_32d.py --out /tmp/s --quick            # about 1 CPU-minute, a smoke run

Each curve (one sampler, start and grid) runs in a child process with a time limit and one retry: on this
2-core machine, with other jobs running, XLA:CPU (jax 0.10.2) twice left a sampling call waiting forever
with every worker thread idle (a lost wake-up in its thread pool; seen with gdb), which would otherwise stall
the whole study.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Any

from gm_jax.bench.mixture_study import (
    StudyConfig,
    adaptive_curve,
    mixture_32d,
    ratio_to_floor,
    sampler_curve,
    sw2_floor,
)
from gm_jax.diffusion.family import configured_sampler, model_defaults
from gm_jax.diffusion.samplers import sampler_names

FOCUS = ("euler", "dpm_solver_2m", "deis")
VARIANTS = {
    "edm_stochastic churn 10": {"sampler": "edm_stochastic", "options": {"s_churn": 10.0}},
    "edm_stochastic churn 80": {"sampler": "edm_stochastic", "options": {"s_churn": 80.0}},
    "restart k=1": {"sampler": "restart", "options": {"restart_k": 1}},
}
TOLERANCES = (1e-2, 1e-3, 1e-4)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="", help="output folder")
    p.add_argument("--num", type=int, default=20000, help="samples per run")
    p.add_argument("--seeds", type=int, default=3, help="seeds per point (common random numbers)")
    p.add_argument("--floor_seeds", type=int, default=16, help="seeds of the floor of exact draws")
    p.add_argument("--projections", type=int, default=32, help="fixed random directions of the sliced W2")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds one curve may take before a retry")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2000 samples, 2 seeds, few samplers")
    p.add_argument("--curve", default="", help=argparse.SUPPRESS)  # child mode: one curve as JSON
    p.add_argument("--result", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _curves(section: str, samplers, cfg: StudyConfig, priors=("gaussian",), variants=None,
            tolerances=TOLERANCES) -> list[dict[str, Any]]:
    runs = [(s, s, {}) for s in samplers] + [(k, v["sampler"], v["options"]) for k, v in (variants or {}).items()]
    return [{"section": section, "label": label, "sampler": sampler, "options": options, "prior": prior,
             "cfg": dataclasses.asdict(cfg), "tolerances": list(tolerances)}
            for prior in priors for label, sampler, options in runs]


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every curve of the study, in order."""
    if args.quick:
        cfg = StudyConfig(num=2000, seeds=2, projections=16, budgets=(5, 20), max_steps=20)
        return _curves("quick", ("euler", "dpm_solver_2m", "dopri5"), cfg, ("gaussian", "exact"),
                       tolerances=(1e-2,))
    base = StudyConfig(num=args.num, seeds=args.seeds, projections=args.projections, budgets=(5, 10, 20, 50, 100),
                       max_steps=100)
    narrow = dataclasses.replace(base, budgets=(10, 20, 100))
    return (_curves("every sampler, EDM grid on the VP SDE, N(0, σ₀²I) start", sampler_names(), base,
                    variants=VARIANTS)
            + _curves("starting law: moments matched, exact marginal", FOCUS, narrow, ("moment_matched", "exact"))
            + _curves("grid: DDPM's trailing index grid (linear β, T = 1000)", ("dpm_solver_2m", "deis", "lms"),
                      dataclasses.replace(narrow, grid="discrete")))


def run_curve(curve: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of one curve (child process)."""
    from gm_jax.bench.exact_w2 import uniform_directions

    cfg = StudyConfig(**{**curve["cfg"], "budgets": tuple(curve["cfg"]["budgets"])})
    gmm = mixture_32d()
    dirs = uniform_directions(cfg.projections, gmm.dim, seed=1)
    if configured_sampler(model_defaults(), curve["sampler"]).adaptive:
        return adaptive_curve(gmm, curve["sampler"], curve["prior"], cfg, dirs, curve["tolerances"])
    return sampler_curve(gmm, curve["sampler"], curve["prior"], cfg, dirs, **curve["options"])


def run_isolated(curve: dict[str, Any], out: str, timeout: float) -> list[dict[str, Any]] | None:
    """:func:`run_curve` in a child process, retried once if it outlives ``timeout`` (None: both timed out)."""
    path = os.path.join(out, "curve.json")
    for attempt in (1, 2):
        try:
            subprocess.run([sys.executable, __file__, "--curve", json.dumps(curve), "--result", path], check=True,
                           timeout=timeout)
            with open(path) as f:
                return json.load(f)
        except subprocess.TimeoutExpired:
            print(f"   timed out after {timeout:.0f} s (attempt {attempt})", flush=True)
    return None


def table(section: dict[str, Any]) -> str:
    """Markdown: one row per (label, start, grid), ratio ± SE per NFE."""
    rows: dict[tuple, list[str]] = {}
    for r in section["records"]:
        se = f" ± {r['ratio_se']:.2f}" if r["ratio_se"] is not None else ""
        rows.setdefault((r["label"], r["prior"], r["grid"]), []).append(f"{r['nfe']}: {r['ratio']:.2f}{se}")
    lines = ["| sampler | start | grid | NFE: SW2 / floor |", "|---|---|---|---|"]
    lines += [f"| {k[0]} | {k[1]} | {k[2]} | {' · '.join(v)} |" for k, v in rows.items()]
    return "\n".join(lines)


def plot(section: dict[str, Any], path: str, num: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, label in enumerate(dict.fromkeys(r["label"] for r in section["records"])):
        pts = sorted((r["nfe"], r["ratio"]) for r in section["records"] if r["label"] == label)
        ax.plot(*zip(*pts, strict=True), marker="os^"[i // 10], ms=3, ls=("-", "--", ":")[i // 10], label=label)
    ax.axhline(1.0, color="k", lw=1, ls="--", label="exact draws (floor)")
    ax.axhline(1.1, color="k", lw=0.5, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="sliced W2 to the mixture / floor",
           title=f"32-D mixture, exact score, {num} samples: {section['title']}")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.curve:
        with open(args.result, "w") as f:
            json.dump(run_curve(json.loads(args.curve)), f)
        return 0
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    curves = plan(args)
    gmm = mixture_32d()
    from gm_jax.bench.exact_w2 import uniform_directions

    first = StudyConfig(**{**curves[0]["cfg"], "budgets": tuple(curves[0]["cfg"]["budgets"])})
    floor_cfg = first if args.quick else dataclasses.replace(first, seeds=args.floor_seeds)
    floor = sw2_floor(gmm, floor_cfg, uniform_directions(first.projections, gmm.dim, seed=1))
    sections: dict[str, dict[str, Any]] = {}
    for curve in curves:
        print(f"== {curve['section']}: {curve['label']} / {curve['prior']}", flush=True)
        sec = sections.setdefault(curve["section"], {"title": curve["section"], "cfg": curve["cfg"], "records": [],
                                                     "failed": []})
        records = run_isolated(curve, args.out, args.timeout)
        if records is None:
            sec["failed"].append(curve["label"])
            continue
        sec["records"] += [{**r, "label": curve["label"], **ratio_to_floor(r["sw2"], floor)} for r in records]
    summary = {"wall_s": time.time() - t0, "dim": gmm.dim, "components": int(gmm.weights.shape[0]), "floor": floor,
               "sections": list(sections.values())}
    with open(os.path.join(args.out, "study_32d.json"), "w") as f:
        json.dump(summary, f, indent=1)
    md = [f"floor (SW2 of {floor_cfg.num} exact draws, {floor_cfg.seeds} seeds): {floor['mean']:.5f} ± "
          f"{floor['se']:.5f}\n"] + [f"## {s['title']}\n\n{table(s)}\n" + (f"\nfailed: {s['failed']}\n" if s["failed"]
                                                                             else "") for s in sections.values()]
    with open(os.path.join(args.out, "study_32d.md"), "w") as f:
        f.write("\n".join(md))
    plot(next(iter(sections.values())), os.path.join(args.out, "study_32d.png"), first.num)
    print("\n".join(md))
    print(f"wall {summary['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
