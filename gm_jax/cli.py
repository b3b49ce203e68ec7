"""``gm-jax``: train | sample | restore | edit | eval | pretrained | data | bench.

    gm-jax train CONFIG --workdir DIR [--config.FIELD=VALUE ...]
    gm-jax sample --workdir DIR | --pretrained NAME [--num N] [--seed S] [--out PREFIX] [sampling options, see --help]
    gm-jax restore --workdir DIR | --pretrained NAME --task inpaint|superres|deblur|colourize --input IMG.png|.npz
        [--mask M.png | --mask_kind KIND] [--scale S] [--blur_sigma B] [--method M] [--sigma_y S] [method options]
        [--num N]
    gm-jax edit --workdir DIR | --pretrained NAME --input IMG.png|.npz [--strength S] [--label L] [--invert]
        [--sampler S] [--num N]
    gm-jax eval --workdir DIR | --pretrained NAME [--metrics fid,kid,is,prdc --num N] [--num_batches N] [--out DIR]
    gm-jax pretrained list | gm-jax pretrained export --workdir DIR --name NAME [--dtype float32|float16]
    gm-jax data prepare NAME [--data_dir DIR] [--source_dir DIR] | gm-jax data list
    gm-jax bench samplers [--quick] [--out DIR] [--workdir RUN] | gm-jax bench train [--quick] [--out DIR]

The sampling flags of ``sample`` and ``eval`` (and the options of ``restore`` and ``edit``) are generated from
what the families declare (:attr:`gm_jax.core.Family.sample_options`, ``restore_options``, ``edit_options``);
a flag the loaded model does not take is rejected with the list of those it does take. Every number is
range-checked before any model is loaded, and nothing in a work directory is written before the request has
been validated; ``restore`` and ``edit`` never write over their input files.

Bad input prints one line ``gm-jax: error: ...`` naming the problem and the fix, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from gm_jax.core.errors import ConfigError, GmJaxError
from gm_jax.core.options import OPTION_TYPES, Option
from gm_jax.train.declared import declared_table  # the families' options as data: no JAX import for --help

TRAIN_EPILOG = """\
Any field of the config can be overridden on the command line as --config.SECTION.FIELD=VALUE, e.g.
  --config.optim.learning_rate=3e-4 --config.train.num_steps=500 --config.model.channels=(32,64)
The value is parsed into the type of the field's current value (int, float, bool, str, tuple); an unknown
field or a value of the wrong type is refused with one line. Sections: seed, data, model, optim, train.
Running the command again on the same --workdir resumes from the newest verified checkpoint; only
train.num_steps, train.progress, train.log_every, train.sample_every and train.eval_every may change."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are our one line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"gm-jax: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def _family_option_flags(p: argparse.ArgumentParser, title: str,
                         table: dict[str, tuple[list[Option], list[str]]] | None = None) -> dict[str, list[Option]]:
    """One flag per option in ``table`` (name -> (declarations, families); default every sampling option
    any family declares); returns name -> its declarations."""
    group = p.add_argument_group(title, "generated from the families' declarations; the loaded model "
                                        "accepts only its own (an unknown one is refused, naming them)")
    found: dict[str, list[Option]] = {}
    for name, (decls, families) in sorted((declared_table("sample") if table is None else table).items()):
        found[name] = decls
        helps = sorted({d.help_text() for d in decls})
        group.add_argument(f"--{name}", type=OPTION_TYPES[decls[0].kind], default=None,
                           help=f"{' | '.join(helps)} [{', '.join(families)}]".replace("%", "%%"))
    return found


def _add_train(sub: Any) -> None:
    t = sub.add_parser("train", help="train (or resume) a model from a config file", epilog=TRAIN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", help="path of a config file with get_config(), e.g. experiments/configs/vae.py")
    t.add_argument("--workdir", required=True, help="run directory: config.json, checkpoints, logs, samples")


def _add_source(p: argparse.ArgumentParser) -> None:
    """--workdir DIR or --pretrained NAME: exactly one (argparse refuses both or neither in one line)."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--workdir", help="a trained run's work directory")
    g.add_argument("--pretrained", metavar="NAME", help="a model shipped with the package (`gm-jax pretrained "
                   "list`), instead of --workdir")


def _add_sample(sub: Any, with_options: bool) -> dict[str, list[Option]]:
    s = sub.add_parser("sample", help="draw samples from a trained run or a shipped pretrained model")
    _add_source(s)
    s.add_argument("--num", type=int, default=64, help="number of samples (>= 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="", help="output prefix (default WORKDIR/samples/sample, or "
                   "samples_NAME/sample with --pretrained NAME)")
    s.add_argument("--prompt", action="append", default=None, help="text prompt of a text-conditioned model "
                   "(repeat for several prompts: --num images each, one grid row per prompt)")
    s.add_argument("--prompt_file", default=None, help="a UTF-8 text file of prompts, one per line (blank lines "
                   "skipped), in addition to --prompt")
    s.add_argument("--negative_prompt", default=None, help="text-conditioned models: the prompt guidance steers "
                   "away from (default: the empty prompt)")
    return _family_option_flags(s, "sampling options") if with_options else {}


def _add_restore(sub: Any, with_options: bool) -> dict[str, list[Option]]:
    r = sub.add_parser("restore", help="solve a linear inverse problem with a trained image model: inpaint, "
                                       "super-resolve, deblur or colourize an input image")
    _add_source(r)
    r.add_argument("--task", required=True, help="inpaint | superres | deblur | colourize (RGB models)")
    r.add_argument("--input", required=True, help="a .png image, or an .npz with an array named images, samples "
                   "or x ([B, H, W, C] or [H, W, C]; uint8 pixels or values in the data's range)")
    r.add_argument("--mask", default=None, help="inpaint: a binary PNG of the image's size, 255 where observed, "
                   "0 where to fill in")
    r.add_argument("--mask_kind", default=None, help="inpaint without --mask: box (a centred H/2 x W/2 box, the "
                   "default), box:TOP,LEFT,HEIGHT,WIDTH, random:P (each pixel observed with probability P) or "
                   "half:SIDE (left, right, top, bottom)")
    r.add_argument("--scale", type=int, default=None, help="superres: the downsampling factor, dividing H and W "
                   "(default 4)")
    r.add_argument("--blur_sigma", type=float, default=None, help="deblur: the Gaussian blur's std in pixels "
                   "(default 1)")
    r.add_argument("--num", type=int, default=4, help="restorations per input image (>= 1)")
    r.add_argument("--seed", type=int, default=0, help="seeds the measurement noise, a random mask and the sampler")
    r.add_argument("--out", default="", help="output prefix (default WORKDIR/samples/restore_TASK, or "
                   "restore_NAME/restore_TASK with --pretrained NAME)")
    return _family_option_flags(r, "restoration options", declared_table("restore")) if with_options else {}


def _add_edit(sub: Any, with_options: bool) -> dict[str, list[Option]]:
    e = sub.add_parser("edit", help="edit an input image with a trained image model: SDEdit, or DDIM inversion "
                                    "and regeneration (--invert)")
    _add_source(e)
    e.add_argument("--input", required=True, help="a .png image, or an .npz with an array named images, samples "
                   "or x")
    e.add_argument("--invert", action="store_true", help="DDIM-invert the input and regenerate it deterministically "
                   "(with --label: as that class)")
    e.add_argument("--num", type=int, default=None, help="edits per input image (>= 1; default 4, 1 with --invert)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default="", help="output prefix (default WORKDIR/samples/edit, or edit_NAME/edit with "
                   "--pretrained NAME)")
    return _family_option_flags(e, "editing options", declared_table("edit")) if with_options else {}


def _add_eval(sub: Any, with_options: bool) -> dict[str, list[Option]]:
    e = sub.add_parser("eval", help="evaluate a trained run or a shipped pretrained model: likelihood on the eval "
                                    "split and sample quality (FID, KID, IS, PRDC); writes eval.json")
    _add_source(e)
    e.add_argument("--out", default="", help="output folder of eval.json and nearest_neighbours.png (default "
                   "WORKDIR, or eval_NAME with --pretrained NAME)")
    e.add_argument("--num_batches", type=int, default=0, help="likelihood eval batches (0: the whole eval split)")
    e.add_argument("--metrics", default="", help="sample-quality metrics, comma-separated: fid,kid,is,prdc")
    e.add_argument("--num", type=int, default=1000, help="samples (and real eval images) for those metrics (>= 2)")
    e.add_argument("--seed", type=int, default=0)
    return _family_option_flags(e, "sampling options for the sample-quality metrics") if with_options else {}


def _add_pretrained(sub: Any) -> None:
    p = sub.add_parser("pretrained", help="models shipped with the package: list them, or export a finished run "
                                          "as one")
    psub = p.add_subparsers(dest="pretrained_command", required=True)
    psub.add_parser("list", help="name, family, data, size on disk and headline metric of each shipped model")
    x = psub.add_parser("export", help="write a finished run's sampling parameters (EMA when kept) as "
                        "NAME.msgpack + NAME.json (config, data spec, metrics measured on the stored weights, sha256)")
    x.add_argument("--workdir", required=True, help="a finished run (final.json written)")
    x.add_argument("--name", required=True, help="model name: lower-case letters, digits, underscores")
    x.add_argument("--dtype", default="float32", help="storage of floating parameters: float32 (exact) or float16 "
                   "(half the size; the sidecar states the metrics of both)")
    x.add_argument("--out", default="", help="output folder (default: the package's gm_jax/pretrained/weights)")
    x.add_argument("--num_batches", type=int, default=0, help="eval batches for the metrics (0: the whole split)")
    x.add_argument("--check_num", type=int, default=128, help="eval images of the fixed-batch check metric")
    x.add_argument("--fid_num", type=int, default=0, help="also measure the FID of this many samples against as "
                   "many eval images (the headline of families without a likelihood; 0: not measured)")
    x.add_argument("--check_metric", default="", help="the eval metric of the fixed-batch check (default: the "
                   "headline when it is an eval metric)")
    x.add_argument("--headline", default="", help="the metric the sidecar leads with (default: bits_per_dim, nll, "
                   "... whichever the family reports first)")
    x.add_argument("--train_command", default="", help="the command that trained the run (recorded as given)")
    x.add_argument("--train_cpu_seconds", type=float, default=None, help="its measured CPU time, user + sys "
                   "(recorded as given)")


def _add_data(sub: Any) -> None:
    d = sub.add_parser("data", help="datasets: list them, or prepare one offline from local files")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dp = dsub.add_parser("prepare", help="prepare a dataset with gm_jax's local TFDS builder")
    dp.add_argument("name")
    dp.add_argument("--data_dir", default="", help="TFDS data_dir (default $GM_JAX_DATA_DIR or ~/tensorflow_datasets)")
    dp.add_argument("--source_dir", default="", help="folder with the raw files (IDX .gz, CIFAR-10 batches)")
    dsub.add_parser("list", help="list dataset names and what each needs (local files, optional packages)")


def _add_bench(sub: Any) -> None:
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
    bs.add_argument("--per_step_only", action="store_true",
                    help="only the per-step cost beyond the network (with diffusers' schedulers when torch and "
                         "diffusers are installed) and the PRNG implementations: no network timing, no quality")
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


def _parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, list[Option]]]:
    """The argument parser; the family-declared sampling flags are built only for ``sample``/``eval``
    (importing every family costs seconds that other commands need not pay)."""
    p = _Parser(prog="gm-jax", description="Generative models as pure JAX functions.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    options = _add_sample(sub, command == "sample")
    options.update(_add_restore(sub, command == "restore"))
    options.update(_add_edit(sub, command == "edit"))
    options.update(_add_eval(sub, command == "eval"))
    _add_pretrained(sub)
    _add_data(sub)
    _add_bench(sub)
    return p, options


def _given_options(args: argparse.Namespace, options: dict[str, list[Option]]) -> dict[str, Any]:
    """The sampling flags the user gave, range-checked before any model work: a value passes when one of
    the option's declarations accepts it (the loaded family then checks against its own)."""
    out = {}
    for name, decls in options.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        errors = []
        for o in decls:
            try:
                out[name] = o.check(value)
                break
            except ConfigError as e:
                errors.append(e)
        else:
            raise errors[0]
    return out


def _require_int(name: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"--{name} must be >= {low}, got {value}")


def _final_step(workdir: str) -> int | None:
    """The step recorded in ``WORKDIR/final.json`` by a finished run (``None``: none, or unreadable)."""
    try:
        with open(os.path.join(workdir, "final.json")) as f:
            return int(json.load(f)["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cmd_train(args: argparse.Namespace, overrides: list[str]) -> int:
    from gm_jax.train.config import apply_overrides, load_config_file
    from gm_jax.train.loop import is_complete, train

    config = apply_overrides(load_config_file(args.config), overrides)
    t0 = time.perf_counter()
    workdir = os.path.abspath(args.workdir)
    before = _final_step(workdir)
    state = train(config, workdir)
    if before == int(state.step) and is_complete(workdir, int(state.step), config.train.num_steps):
        print(f"the run in {args.workdir} is complete at step {int(state.step)}; nothing to do "
              "(raise --config.train.num_steps to train further)")
        return 0
    print(f"trained to step {int(state.step)} in {time.perf_counter() - t0:.1f} s; outputs in {args.workdir}")
    return 0


def _output_prefix(out: str, workdir: str, name: str = "sample") -> str:
    from gm_jax.train.workdir import check_writable

    prefix = out or os.path.join(workdir, "samples", name)
    check_writable(os.path.dirname(os.path.abspath(prefix)), "output folder", "--out")
    for ext in (".png", ".npz"):
        if os.path.isdir(prefix + ext):
            raise ConfigError(f"--out {prefix}: {prefix + ext} is a directory; choose another --out prefix")
    return prefix


def _check_source(args: argparse.Namespace) -> None:
    """The cheap checks of the model's source before any work: a readable config.json of --workdir, or a
    known --pretrained NAME with a readable sidecar."""
    if args.pretrained is not None:
        from gm_jax.pretrained import read_sidecar

        read_sidecar(args.pretrained)
    else:
        from gm_jax.train.config import read_config

        read_config(args.workdir)


def _load_model(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(family, sampling parameters, data spec)`` of --pretrained NAME (weights verified by sha256) or of
    --workdir DIR (newest verified checkpoint)."""
    if args.pretrained is not None:
        from gm_jax.pretrained.loading import load_model

        model = load_model(args.pretrained)
        return model.family, model.params, model.spec
    from gm_jax.train.workdir import load_workdir

    run, state = load_workdir(args.workdir)
    return run.family, state.sampling_params(), run.pipeline.spec


def _default_prefix(args: argparse.Namespace, name: str, folder: str) -> str:
    """--out, else WORKDIR/samples/NAME, else (--pretrained MODEL) FOLDER_MODEL/NAME in the current folder."""
    if args.out or args.pretrained is None:
        return _output_prefix(args.out, args.workdir, name)
    return _output_prefix(os.path.join(f"{folder}_{args.pretrained}", name), "")


def _start_jax() -> None:
    """JAX's persistent compilation cache, set up once the cheap checks of a command have passed (importing
    JAX costs seconds that an argument error need not pay)."""
    from gm_jax.train.compile_cache import enable_compilation_cache

    enable_compilation_cache()


def cmd_sample(args: argparse.Namespace, options: dict[str, list[Option]]) -> int:
    _require_int("num", args.num, 1)
    given = _given_options(args, options)
    prompts = _prompts(args)
    _start_jax()
    import numpy as np

    from gm_jax.train.images import save_prompt_grid, save_samples
    from gm_jax.train.workdir import draw_samples

    _check_source(args)  # a missing or garbage config.json, an unknown pretrained name: before any work
    prefix = _default_prefix(args, "sample", "samples")
    family, params, spec = _load_model(args)
    value_range = spec.value_range
    if not family.can_sample:
        raise ConfigError(f"family {family.name!r} cannot sample; it is evaluated with `gm-jax eval`")
    given = family.check_sample_options(given)
    text = _text_conditioning(family, prompts, args.negative_prompt)
    t0 = time.perf_counter()
    x, info = draw_samples(family, params, args.seed, args.num, **given, **text)
    seconds = time.perf_counter() - t0
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    if prompts:
        save_prompt_grid(x, prompts, prefix + ".png", value_range)
        info = {**info, "prompts": prompts}
    else:
        save_samples(x, prefix + ".png", value_range)
    np.savez(prefix + ".npz", samples=x, **{k: np.asarray(v) for k, v in info.items()})
    print(json.dumps({"num": args.num, "seconds_incl_compile": round(seconds, 3), **info,
                      "png": prefix + ".png", "npz": prefix + ".npz"}))
    return 0


def _prompts(args: argparse.Namespace) -> list[str]:
    """The prompts of ``--prompt`` (in order) then of ``--prompt_file`` (one per non-blank line)."""
    prompts = list(args.prompt or [])
    if args.prompt_file is not None:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--prompt_file {args.prompt_file!r} cannot be read as UTF-8 text "
                              f"({type(e).__name__}); pass a text file with one prompt per line") from None
        prompts += [line.strip() for line in lines if line.strip()]
        if not any(line.strip() for line in lines):
            raise ConfigError(f"--prompt_file {args.prompt_file!r} holds no prompt; write one prompt per line")
    return prompts


def _text_conditioning(family: Any, prompts: list[str], negative: str | None) -> dict[str, Any]:
    """The prompt keyword arguments of ``family.sample``; one line when the model takes no text."""
    if not prompts and negative is None:
        return {}
    if "text" not in family.conditioning:
        raise ConfigError(f"family {family.name!r} is not text-conditioned; drop --prompt/--negative_prompt "
                          f"(it takes: {', '.join(family.conditioning) or 'no condition'})")
    return {"prompt": prompts or None, "negative_prompt": negative}


def _task_settings(args: argparse.Namespace) -> Any:
    """The task's settings from the flags, checked against the input before any model is loaded: the
    input file, the mask (binary, of the input's size) and the operator (e.g. --scale divides H and W)."""
    from gm_jax.train import restore_inputs as rs

    rs.check_task_flags(args.task, {"mask": args.mask, "mask_kind": args.mask_kind, "scale": args.scale,
                                    "blur_sigma": args.blur_sigma})
    images = rs.read_input(args.input)
    mask = rs.read_mask(args.mask, images.hw) if args.mask is not None else None
    settings = rs.TaskSettings(args.task, mask, args.mask_kind, args.scale, args.blur_sigma, args.seed)
    rs.check_operator(settings, images.hw + (3 if args.task == "colourize" else images.pixels.shape[-1],))
    return images, settings


def cmd_restore(args: argparse.Namespace, options: dict[str, list[Option]]) -> int:
    from gm_jax.train import restore_inputs
    from gm_jax.train.declared import restore_methods

    _require_int("num", args.num, 1)
    given = _given_options(args, options)
    method = restore_inputs.check_method_options(given, options["method"][0].default, restore_methods())
    images, settings = _task_settings(args)
    _check_source(args)
    prefix = _default_prefix(args, f"restore_{args.task}", "restore")
    restore_inputs.check_not_input(prefix, [args.input, args.mask])
    _start_jax()
    from gm_jax.train import restore as rs

    family, params, spec = _load_model(args)
    # the method goes to family.restore, which says what the model needs (e.g. sr3 only for SR3 models)
    given = family.check_restore_options({k: v for k, v in given.items() if k != "method"})
    x = rs.images_for_spec(images, spec)
    op = rs.build_operator(settings, spec.shape)
    t0 = time.perf_counter()
    result = rs.restore_images(family, params, x, op, args.seed, args.num, {**given, "method": method})
    seconds = time.perf_counter() - t0
    png, npz = rs.write_restoration(prefix, result, spec.value_range)
    print(json.dumps({"task": args.task, "operator": op.name, "method": method, "images": int(x.shape[0]),
                      "num": args.num, "nfe": result["nfe"], "seconds_incl_compile": round(seconds, 3),
                      "png": png, "npz": npz}))
    return 0


def cmd_edit(args: argparse.Namespace, options: dict[str, list[Option]]) -> int:
    from gm_jax.train import restore_inputs

    num = args.num if args.num is not None else (1 if args.invert else 4)
    _require_int("num", num, 1)
    if args.invert and num > 1:
        raise ConfigError("--invert is deterministic (DDIM inversion and regeneration), so every edit would be the "
                          "same; drop --num or pass --num 1")
    given = _given_options(args, options)
    if args.invert and "sampler" in given:
        raise ConfigError("--invert regenerates with deterministic DDIM; drop --sampler")
    images = restore_inputs.read_input(args.input)
    _check_source(args)
    prefix = _default_prefix(args, "edit", "edit")
    restore_inputs.check_not_input(prefix, [args.input])
    _start_jax()
    from gm_jax.train import restore as rs

    family, params, spec = _load_model(args)
    given = family.check_edit_options(given)
    x = rs.images_for_spec(images, spec)
    t0 = time.perf_counter()
    result = rs.edit_images(family, params, x, args.seed, num, args.invert, given)
    seconds = time.perf_counter() - t0
    png, npz = rs.write_edits(prefix, result, spec.value_range)
    print(json.dumps({"edit": "invert" if args.invert else "sdedit", "images": int(x.shape[0]), "num": num,
                      "nfe": result["nfe"], "seconds_incl_compile": round(seconds, 3), "png": png, "npz": npz}))
    return 0


def cmd_eval(args: argparse.Namespace, options: dict[str, list[Option]]) -> int:
    _require_int("num_batches", args.num_batches, 0)
    given = _given_options(args, options)
    _start_jax()
    from gm_jax.train.loop import check_finite_metrics, evaluate
    from gm_jax.train.quality import parse_metrics, sample_quality
    from gm_jax.train.workdir import check_writable, load_workdir

    names = parse_metrics(args.metrics)
    if names:
        _require_int("num", args.num, 2)
    if given and not names:
        raise ConfigError(f"--{sorted(given)[0]} applies to the sample-quality metrics; add --metrics fid,... "
                          "or drop it")
    _check_source(args)
    out = args.out or (args.workdir if args.pretrained is None else f"eval_{args.pretrained}")
    check_writable(out, *(("output folder", "--out") if args.out or args.pretrained else ()))
    if args.pretrained is not None:
        from gm_jax.pretrained.loading import pretrained_run

        run, state = pretrained_run(args.pretrained)
    else:
        run, state = load_workdir(args.workdir)
    if names and not run.family.can_sample:
        raise ConfigError(f"family {run.family.name!r} cannot sample, so it has no {names[0]}; drop --metrics")
    if names:
        given = run.family.check_sample_options(given)
    results: dict = {"step": int(state.step), **evaluate(run, state, args.num_batches)}
    check_finite_metrics({k: v for k, v in results.items() if k != "step"}, int(state.step))
    if names:
        figure = os.path.join(out, "nearest_neighbours.png")
        quality = sample_quality(run, state, names, args.num, args.seed, figure_path=figure, **given)
        check_finite_metrics({k: v["value"] for k, v in quality["metrics"].items()}, int(state.step),
                             "sample-quality")
        results["sample_quality"] = {**quality, "nearest_neighbours_png": figure}
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "eval.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    print(json.dumps(results))
    return 0


def cmd_pretrained(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import shlex

    from gm_jax.pretrained import format_table, models

    if args.pretrained_command == "list":
        print(format_table(models()))
        return 0
    from gm_jax.pretrained.export import export_run

    sidecar = export_run(args.workdir, args.name, args.dtype, args.out or None, num_batches=args.num_batches,
                         check_num=args.check_num, headline=args.headline or None,
                         train_command=args.train_command or None, train_cpu_seconds=args.train_cpu_seconds,
                         export_command="gm-jax " + shlex.join(argv), fid_num=args.fid_num,
                         check_metric=args.check_metric or None)
    print(json.dumps({"name": sidecar["name"], "family": sidecar["family"], "storage_dtype": sidecar["storage_dtype"],
                      "size_bytes": sidecar["size_bytes"], "headline": sidecar["metrics"]["headline"],
                      "check": {k: sidecar["check"][k] for k in ("metric", "value", "num_images")},
                      "sha256": sidecar["sha256"]}))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from gm_jax.data import prepare
    from gm_jax.data.loading import describe_datasets

    if args.data_command == "list":
        rows = describe_datasets()
        width = max(len(n) for n in rows)
        print("\n".join(f"{name:<{width}}  {note}" for name, note in rows.items()))
        return 0
    from gm_jax.train.workdir import check_writable

    if args.data_dir:
        check_writable(args.data_dir, "data folder", "--data_dir")
    path = prepare(args.name, data_dir=args.data_dir or None, source_dir=args.source_dir or None)
    print(f"prepared {args.name} in {path}")
    return 0


def _simulated_devices(count: int) -> None:
    """Ask XLA for ``count`` CPU devices; this counts only before JAX starts its backends."""
    if count > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={count}").strip()


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench_command == "train":
        _require_int("devices", args.devices, 1)
        _simulated_devices(args.devices)
    from gm_jax.bench.commands import apply_options, run_sampler_bench, run_train_bench, sampler_grid
    from gm_jax.train.workdir import check_writable

    check_writable(args.out, "output folder", "--out")
    log = lambda line: print(line, file=sys.stderr, flush=True)
    if args.bench_command == "samplers":
        grid = apply_options(sampler_grid(args.quick), nets=args.nets, samplers=args.samplers, steps=args.steps,
                             batches=args.batches, repeats=args.repeats, quality_steps=args.quality_steps,
                             quality_num=args.quality_num, quality_samplers=args.quality_samplers,
                             python_baseline=not args.no_python_baseline, num_timesteps=args.num_timesteps,
                             min_time=args.min_time, quality_seeds=args.quality_seeds,
                             quality_projections=args.quality_projections, per_step_only=args.per_step_only)
        payload = run_sampler_bench(grid, args.out, args.quick, args.workdir, log=log)
    else:
        payload = run_train_bench(args.out, args.quick, args.configs, args.k, args.repeats, args.scaling,
                                  args.min_time, ["--config." + v for v in args.set], log=log, dtypes=args.dtype,
                                  torch=args.torch)
    print(json.dumps({"paths": payload["paths"], "targets": payload["targets"],
                      "total_wall_s": round(payload["total_wall_s"], 1),
                      "total_cpu_s": round(payload["total_cpu_s"], 1)}))
    return 0


def _dispatch(args: argparse.Namespace, overrides: list[str], options: dict[str, list[Option]],
              argv: Sequence[str] = ()) -> int:
    if args.command == "train":
        return cmd_train(args, overrides)
    if args.command == "sample":
        return cmd_sample(args, options)
    if args.command == "restore":
        return cmd_restore(args, options)
    if args.command == "edit":
        return cmd_edit(args, options)
    if args.command == "eval":
        return cmd_eval(args, options)
    if args.command == "bench":
        return cmd_bench(args)
    if args.command == "pretrained":
        return cmd_pretrained(args, argv)
    return cmd_data(args)


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)  # TFDS/orbax chatter; our errors are one line
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    command = next((a for a in rest if not a.startswith("-")), None)
    try:
        parser, options = _parser(command)
        args = parser.parse_args(rest)
        if overrides and args.command != "train":
            raise ConfigError(f"--config.* overrides apply to `gm-jax train` only, not `{args.command}`")
        if args.command in ("train", "pretrained"):  # sample, eval, restore, edit: after their checks
            _start_jax()
        return _dispatch(args, overrides, options, rest)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed as one line)
        return int(e.code or 0)
    except GmJaxError as e:
        print(f"gm-jax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gm-jax: interrupted; the last checkpoint is intact and `gm-jax train` resumes from it"
              if command == "train" else f"gm-jax: interrupted; `gm-jax {command}` stopped",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
