"""``gm-jax``: train | sample | eval | data.

    gm-jax train CONFIG --workdir DIR [--config.FIELD=VALUE ...]
    gm-jax sample --workdir DIR [--num N] [--seed S] [--sampler NAME --steps N --eta E --guidance W --label L]
    gm-jax eval --workdir DIR [--metrics fid,kid,is,prdc --num N] [--num_batches N]
    gm-jax data prepare NAME [--data_dir DIR] [--source_dir DIR] | gm-jax data list
    gm-jax bench samplers [--quick] [--out DIR] [--workdir RUN] | gm-jax bench train [--quick] [--out DIR]

Bad input prints one line ``gm-jax: error: ...`` naming the problem and the fix, and exits with status 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from collections.abc import Sequence

from gm_jax.core.errors import ConfigError, GmJaxError

SAMPLER_ARGS = ("sampler", "steps", "eta", "guidance", "label", "temperature", "truncation")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gm-jax", description="Generative models as pure JAX functions.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a model from a config file")
    t.add_argument("config", help="path of a config file with get_config(), e.g. experiments/configs/vae.py")
    t.add_argument("--workdir", required=True, help="run directory: config.json, checkpoints, logs, samples")

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("--workdir", required=True)
    s.add_argument("--num", type=int, default=64, help="number of samples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="", help="output prefix (default WORKDIR/samples/sample)")
    s.add_argument("--sampler", default=None, help="sampler name (families with several samplers)")
    s.add_argument("--steps", type=int, default=None, help="number of sampler steps")
    s.add_argument("--eta", type=float, default=None, help="DDIM eta in [0, 1]")
    s.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    s.add_argument("--label", type=int, default=None, help="class label for conditional models")
    s.add_argument("--temperature", type=float, default=None, help="sampling temperature")
    s.add_argument("--truncation", type=float, default=None, help="StyleGAN truncation psi in [0, 1]")

    e = sub.add_parser("eval", help="evaluate a trained run: likelihood on the eval split and sample quality "
                                    "(FID, KID, IS, PRDC); writes WORKDIR/eval.json")
    e.add_argument("--workdir", required=True)
    e.add_argument("--num_batches", type=int, default=0, help="likelihood eval batches (0: the whole eval split)")
    e.add_argument("--metrics", default="", help="sample-quality metrics, comma-separated: fid,kid,is,prdc")
    e.add_argument("--num", type=int, default=1000, help="samples (and real eval images) for those metrics")
    e.add_argument("--seed", type=int, default=0)

    d = sub.add_parser("data", help="datasets: list them, or prepare one offline from local files")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dp = dsub.add_parser("prepare", help="prepare a dataset with gm_jax's local TFDS builder")
    dp.add_argument("name")
    dp.add_argument("--data_dir", default="", help="TFDS data_dir (default $GM_JAX_DATA_DIR or ~/tensorflow_datasets)")
    dp.add_argument("--source_dir", default="", help="folder with the raw files (IDX .gz, CIFAR-10 batches)")
    dsub.add_parser("list", help="list dataset names")

    b = sub.add_parser("bench", help="benchmarks: sampler speed and quality per NFE; training throughput")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    bs = bsub.add_parser("samplers", help="compile/run time, NFE, overhead over the network, fused vs "
                                          "Python-stepped, recompilations, quality per NFE")
    bt = bsub.add_parser("train", help="training images/s: 1 vs k fused steps per call, dtypes, devices")
    for q in (bs, bt):
        q.add_argument("--quick", action="store_true", help="a small grid that runs in a few minutes on a CPU")
        q.add_argument("--out", default="runs/bench", help="output folder (JSON, Markdown, PNG)")
        q.add_argument("--repeats", type=int, default=0, help="timed repeats per measurement (0: mode default)")
        q.add_argument("--min_time", type=float, default=-1.0,
                       help="time each measurement for at least this many seconds (default 0.3 / 0.5)")
    bs.add_argument("--workdir", default="", help="a trained diffusion run for FID vs NFE (optional)")
    bs.add_argument("--nets", default="", help="networks, comma-separated: mlp2d_tiny,mlp2d,unet_tiny,unet_small "
                    "('none': no timing)")
    bs.add_argument("--samplers", default="", help="samplers, comma-separated (default: all)")
    bs.add_argument("--steps", default="", help="step counts, comma-separated")
    bs.add_argument("--batches", default="", help="batch sizes, comma-separated")
    bs.add_argument("--num_timesteps", type=int, default=0, help="DDPM schedule length T (default 1000)")
    bs.add_argument("--quality_steps", default="", help="step counts for quality vs NFE ('none' skips it)")
    bs.add_argument("--quality_samplers", default="", help="samplers for quality vs NFE")
    bs.add_argument("--quality_num", type=int, default=0, help="samples per quality measurement")
    bs.add_argument("--quality_seeds", type=int, default=0, help="seeds for quality vs NFE (mean ± s.e.; default 1)")
    bs.add_argument("--quality_projections", type=int, default=0,
                    help="fixed directions of the sliced W2 to the exact mixture (default 64)")
    bs.add_argument("--no_python_baseline", action="store_true", help="skip the Python-stepped baseline")
    bt.add_argument("--configs", default="", help="config files under experiments/configs, comma-separated")
    bt.add_argument("--k", type=int, default=0, help="steps fused per call (default 4 quick, 10 full)")
    bt.add_argument("--scaling", default="", help="configs to run over 1, 2, 8 devices (default: the first)")
    bt.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="config override for every benchmarked config, e.g. --set data.batch_size=32 (repeatable)")
    bt.add_argument("--dtype", default="both", help="float32 | bfloat16 | both (default): bfloat16 rows (compute "
                    "dtype; parameters float32) for families with model.dtype, next to float32")
    bt.add_argument("--torch", action="store_true", help="also time the PyTorch twin of the tiny-U-Net DDPM step "
                    "(needs the optional extra: pip install torch==2.13.0)")
    bt.add_argument("--devices", type=int, default=8, help="simulated CPU devices (set before JAX starts)")
    return p


def cmd_train(args: argparse.Namespace, overrides: list[str]) -> int:
    from gm_jax.train.config import apply_overrides, load_config_file
    from gm_jax.train.loop import train

    config = apply_overrides(load_config_file(args.config), overrides)
    t0 = time.perf_counter()
    state = train(config, args.workdir)
    print(f"trained to step {int(state.step)} in {time.perf_counter() - t0:.1f} s; outputs in {args.workdir}")
    return 0


def _sampler_kwargs(args: argparse.Namespace, sample_fn) -> dict:
    given = {k: getattr(args, k) for k in SAMPLER_ARGS if getattr(args, k) is not None}
    params = inspect.signature(sample_fn).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in given if k not in params and not takes_any]
    if unknown:
        raise ConfigError(f"this model's sampler does not take --{unknown[0]}; "
                          f"it takes: {', '.join(k for k in params if k not in ('params', 'key', 'num')) or 'none'}")
    return given


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from gm_jax.train.images import save_samples
    from gm_jax.train.loop import draw_samples, load_workdir

    if args.num < 1:
        raise ConfigError(f"--num must be >= 1, got {args.num}")
    run, state = load_workdir(args.workdir)
    if run.family.sample is None:
        raise ConfigError(f"family {run.family.name!r} cannot sample")
    kwargs = _sampler_kwargs(args, run.family.sample)
    t0 = time.perf_counter()
    x, info = draw_samples(run.family, state.sampling_params(), args.seed, args.num, **kwargs)
    seconds = time.perf_counter() - t0
    prefix = args.out or os.path.join(args.workdir, "samples", "sample")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    save_samples(x, prefix + ".png", run.pipeline.spec.value_range)
    np.savez(prefix + ".npz", samples=x, **{k: np.asarray(v) for k, v in info.items()})
    print(json.dumps({"num": args.num, "seconds_incl_compile": round(seconds, 3), **info,
                      "png": prefix + ".png", "npz": prefix + ".npz"}))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from gm_jax.train.loop import evaluate, load_workdir
    from gm_jax.train.quality import parse_metrics, sample_quality

    names = parse_metrics(args.metrics)
    run, state = load_workdir(args.workdir)
    results: dict = {"step": int(state.step), **evaluate(run, state, args.num_batches)}
    if names:
        if run.family.sample is None:
            raise ConfigError(f"family {run.family.name!r} cannot sample, so it has no {names[0]}; drop --metrics")
        figure = os.path.join(args.workdir, "nearest_neighbours.png")
        results["sample_quality"] = sample_quality(run, state, names, args.num, args.seed, figure_path=figure)
        results["sample_quality"]["nearest_neighbours_png"] = figure
    path = os.path.join(args.workdir, "eval.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    print(json.dumps(results))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from gm_jax.data import DATASET_NAMES, prepare

    if args.data_command == "list":
        print("\n".join(DATASET_NAMES))
        return 0
    path = prepare(args.name, data_dir=args.data_dir or None, source_dir=args.source_dir or None)
    print(f"prepared {args.name} in {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench_command == "train" and args.devices > 1 and "xla_force_host_platform_device_count" not in \
            os.environ.get("XLA_FLAGS", ""):
        from jax._src import xla_bridge

        if not xla_bridge.backends_are_initialized():  # the flag only counts before JAX starts its backends
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                       f" --xla_force_host_platform_device_count={args.devices}").strip()
    from gm_jax.bench.commands import apply_options, run_sampler_bench, run_train_bench, sampler_grid

    log = lambda line: print(line, file=sys.stderr, flush=True)
    if args.bench_command == "samplers":
        grid = apply_options(sampler_grid(args.quick), nets=args.nets, samplers=args.samplers, steps=args.steps,
                             batches=args.batches, repeats=args.repeats, quality_steps=args.quality_steps,
                             quality_num=args.quality_num, quality_samplers=args.quality_samplers,
                             python_baseline=not args.no_python_baseline, num_timesteps=args.num_timesteps,
                             min_time=args.min_time, quality_seeds=args.quality_seeds,
                             quality_projections=args.quality_projections)
        payload = run_sampler_bench(grid, args.out, args.quick, args.workdir, log=log)
    else:
        payload = run_train_bench(args.out, args.quick, args.configs, args.k, args.repeats, args.scaling,
                                  args.min_time, ["--config." + v for v in args.set], log=log, dtypes=args.dtype,
                                  torch=args.torch)
    print(json.dumps({"paths": payload["paths"], "targets": payload["targets"],
                      "total_wall_s": round(payload["total_wall_s"], 1),
                      "total_cpu_s": round(payload["total_cpu_s"], 1)}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)  # TFDS/orbax chatter; our errors are one line
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    args = _parser().parse_args([a for a in argv if not a.startswith("--config.")])
    if overrides and args.command != "train":
        print(f"gm-jax: error: --config.* overrides apply to `gm-jax train` only, not `{args.command}`",
              file=sys.stderr)
        return 2
    try:
        if args.command == "train":
            return cmd_train(args, overrides)
        if args.command == "sample":
            return cmd_sample(args)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "bench":
            return cmd_bench(args)
        return cmd_data(args)
    except GmJaxError as e:
        print(f"gm-jax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gm-jax: interrupted; the last checkpoint is intact and `gm-jax train` resumes from it",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
