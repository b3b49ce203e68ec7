"""Bad input, everywhere: each case ends with exit status 2, one line starting ``gm-jax: error:``, no
traceback, and every file under the test's folder (a trained run included) exactly as it was."""

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from gm_jax.cli import main
from tests.test_cli import tiny

ROOT = Path(__file__).resolve().parents[1]
VAE = str(ROOT / "experiments" / "configs" / "vae.py")
PRETRAINED = "vae_fashion_mnist_small"  # shipped in gm_jax/pretrained/weights


def tree_hash(folder: Path) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder) + "/"] = "dir"
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = "link" if os.path.islink(p) else hashlib.sha256(
                open(p, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def area(tmp_path_factory, data_dir):
    """A folder with a trained tiny VAE run and the fixtures the cases point at."""
    base = tmp_path_factory.mktemp("bad_input")
    assert main(["train", VAE, "--workdir", str(base / "run"), *tiny(data_dir)]) == 0
    (base / "empty").mkdir()
    (base / "garbage_run").mkdir()
    (base / "garbage_run" / "config.json").write_bytes(b"\x00\xffnot json{")
    (base / "list_run").mkdir()
    (base / "list_run" / "config.json").write_text("[1, 2, 3]")
    (base / "nomodel_run").mkdir()
    (base / "nomodel_run" / "config.json").write_text('{"seed": 0}')
    (base / "nockpt_run").mkdir()
    shutil.copy(base / "run" / "config.json", base / "nockpt_run" / "config.json")
    (base / "a_file").write_text("x")
    (base / "outdir.png").mkdir()
    configs = {
        "syntax.py": "def get_config(:\n",
        "raises.py": "def get_config():\n    raise RuntimeError('boom')\n",
        "noget.py": "X = 1\n",
        "wrongtype.py": "def get_config():\n    return {'a': 1}\n",
        "importerror.py": "import not_a_module_anywhere\n",
    }
    for name, text in configs.items():
        (base / name).write_text(text)
    idx = base / "idx_garbage"
    idx.mkdir()
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz"):
        (idx / f).write_bytes(gzip.compress(b"garbage bytes, not IDX"))
    trunc = base / "idx_truncated"
    trunc.mkdir()
    header = bytes([0, 0, 8, 3, 0, 0, 0xEA, 0x60, 0, 0, 0, 28, 0, 0, 0, 28])  # 60000x28x28 but no pixels
    for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (trunc / f).write_bytes(gzip.compress(header + b"\x00" * 100))
    for f in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (trunc / f).write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0xEA, 0x60]) + b"\x00" * 10))
    notgz = base / "idx_notgz"
    notgz.mkdir()
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz"):
        (notgz / f).write_bytes(b"plain text, not gzip")
    _image_inputs(base)
    cifar = base / "cifar_garbage" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (cifar / f).write_bytes(b"not a pickle")
    return base


def _image_inputs(base: Path) -> None:
    """Inputs of `restore`/`edit`: a 28 x 28 grayscale PNG, a binary mask of its size, masks that are not
    binary or of another size, a PNG and an .npz of garbage bytes, and an .npz without an images array."""
    import numpy as np
    from PIL import Image

    pixels = (np.arange(28 * 28).reshape(28, 28) % 256).astype(np.uint8)
    Image.fromarray(pixels).save(base / "img.png")
    Image.fromarray(pixels).save(base / "mask_grey.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(base / "mask_small.png")
    Image.fromarray(np.where(pixels > 128, 255, 0).astype(np.uint8)).save(base / "mask.png")
    (base / "garbage.png").write_bytes(b"\x89PNG not really an image")
    (base / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    np.savez(base / "nokey.npz", pixels=pixels)


RW = ["restore", "--workdir", "{B}/run", "--task", "inpaint"]  # a restore request without its input
R = RW + ["--input", "{B}/img.png"]  # ... with a valid input
RS = ["restore", "--workdir", "{B}/run", "--input", "{B}/img.png"]  # ... without its task

# (name, argv with {B} = the area folder and {D} = the TFDS data_dir, words the error line must contain)
CASES = [
    # train: config files
    ("train_missing_config", ["train", "{B}/nope.py", "--workdir", "{B}/w"], "not found"),
    ("train_config_is_dir", ["train", "{B}/empty", "--workdir", "{B}/w"], "not found"),
    ("train_config_syntax", ["train", "{B}/syntax.py", "--workdir", "{B}/w"], "syntax error"),
    ("train_config_raises", ["train", "{B}/raises.py", "--workdir", "{B}/w"], "RuntimeError: boom"),
    ("train_config_no_get_config", ["train", "{B}/noget.py", "--workdir", "{B}/w"], "no get_config()"),
    ("train_config_wrong_type", ["train", "{B}/wrongtype.py", "--workdir", "{B}/w"], "got dict"),
    ("train_config_import_error", ["train", "{B}/importerror.py", "--workdir", "{B}/w"], "fails to import"),
    # train: overrides and fields
    ("train_unknown_dataset", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.data.name=imagenet"],
     "unknown dataset"),
    ("train_unknown_family", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.model.family=transformer"],
     "unknown model.family"),
    ("train_unknown_field", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.optim.lr=1"],
     "unknown config field"),
    ("train_unknown_section", ["train", VAE, "--workdir", "{B}/w", "--config.nosuch.x=1"], "unknown config field"),
    ("train_section_as_value", ["train", VAE, "--workdir", "{B}/w", "--config.optim=1"], "is a section"),
    ("train_wrong_type", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.train.num_steps=many"],
     "expects a int"),
    ("train_bad_bool", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.train.progress=maybe"],
     "expects a bool"),
    ("train_override_no_value", ["train", VAE, "--workdir", "{B}/w", "--config.train.num_steps"],
     "overrides look like"),
    # train: the launch fields of a multi-process run
    ("train_distributed_no_coordinator", ["train", VAE, "--workdir", "{B}/w", "TINY",
                                          "--config.train.distributed=true"], "could not be joined"),
    ("train_process_id_out_of_range", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.train.num_processes=2",
                                       "--config.train.process_id=2"], "must be < config.train.num_processes"),
    ("train_coordinator_unreachable", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.train.distributed=true",
                                       "--config.train.coordinator_address=127.0.0.1:1",
                                       "--config.train.num_processes=2", "--config.train.process_id=1",
                                       "--config.train.distributed_timeout=1"], "did not answer within 1 s"),
    ("train_distributed_timeout_zero", ["train", VAE, "--workdir", "{B}/w", "TINY",
                                        "--config.train.distributed_timeout=0"], "distributed_timeout must be"),
    ("train_batch_not_dividing", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.data.batch_size=12"],
     "data.batch_size=12 does not divide over 8 devices"),
    ("train_eval_batch_not_dividing", ["train", VAE, "--workdir", "{B}/w", "TINY",
                                       "--config.train.eval_batch_size=12"], "train.eval_batch_size=12"),
    ("train_batch_zero", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.data.batch_size=0"],
     "batch_size must be >= 1"),
    ("train_negative_steps", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.train.num_steps=-1"],
     "num_steps"),
    ("train_zero_log_every", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.train.log_every=0"],
     "log_every"),
    ("train_negative_sample_every", ["train", VAE, "--workdir", "{B}/w", "TINY",
                                     "--config.train.sample_every=-5"], "sample_every"),
    ("train_negative_eval_every", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.train.eval_every=-1"],
     "eval_every"),
    ("train_negative_num_samples", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.train.num_samples=0"],
     "num_samples"),
    ("train_bad_num_devices", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.train.num_devices=99"],
     "num_devices=99"),
    ("train_bad_model_value", ["train", VAE, "--workdir", "{B}/w", "TINY", "--config.model.arch=transformer"],
     "transformer"),
    ("train_workdir_under_file", ["train", VAE, "--workdir", "{B}/a_file/run", "TINY"], "not writable"),
    ("train_workdir_read_only", ["train", VAE, "--workdir", "/proc/self/gm_jax_run", "TINY"], "not writable"),
    ("train_different_config", ["train", VAE, "--workdir", "{B}/run", "TINY", "--config.model.latent_dim=3"],
     "different config (model.latent_dim)"),
    ("train_num_steps_below_reached", ["train", VAE, "--workdir", "{B}/run", "TINY",
                                       "--config.train.num_steps=1"], "past config.train.num_steps=1"),
    ("train_garbage_config_json", ["train", VAE, "--workdir", "{B}/garbage_run", "TINY"],
     "not a valid gm_jax config"),
    ("train_no_workdir", ["train", VAE], "required"),
    ("no_command", [], "required"),
    ("unknown_command", ["fly"], "invalid choice"),
    # sample
    ("sample_missing_workdir", ["sample", "--workdir", "{B}/nowhere"], "no config.json"),
    ("sample_empty_workdir", ["sample", "--workdir", "{B}/empty"], "no config.json"),
    ("sample_garbage_config_json", ["sample", "--workdir", "{B}/garbage_run"], "not a valid gm_jax config"),
    ("sample_list_config_json", ["sample", "--workdir", "{B}/list_run"], "not a valid gm_jax config"),
    ("sample_config_json_no_model", ["sample", "--workdir", "{B}/nomodel_run"], "no model.family"),
    ("sample_no_checkpoint", ["sample", "--workdir", "{B}/nockpt_run"], "no checkpoint"),
    ("sample_num_zero", ["sample", "--workdir", "{B}/run", "--num", "0"], "--num must be >= 1"),
    ("sample_num_negative", ["sample", "--workdir", "{B}/run", "--num", "-3"], "--num must be >= 1"),
    ("sample_num_not_int", ["sample", "--workdir", "{B}/run", "--num", "lots"], "invalid int value"),
    ("sample_temperature_nan", ["sample", "--workdir", "{B}/run", "--temperature", "nan"],
     "--temperature must be finite"),
    ("sample_temperature_zero", ["sample", "--workdir", "{B}/run", "--temperature", "0"], "--temperature must be > 0"),
    ("sample_temperature_negative", ["sample", "--workdir", "{B}/run", "--temperature", "-1"],
     "--temperature must be > 0"),
    ("sample_truncation_above_one", ["sample", "--workdir", "{B}/run", "--truncation", "1.5"],
     "--truncation must be in [0, 1]"),
    ("sample_guidance_nan", ["sample", "--workdir", "{B}/run", "--guidance", "nan"], "--guidance must be finite"),
    ("sample_guidance_inf", ["sample", "--workdir", "{B}/run", "--guidance", "inf"], "--guidance must be finite"),
    ("sample_steps_zero", ["sample", "--workdir", "{B}/run", "--steps", "0"], "--steps must be"),
    ("sample_steps_not_int", ["sample", "--workdir", "{B}/run", "--steps", "ten"], "invalid int value"),
    ("sample_eta_above_one", ["sample", "--workdir", "{B}/run", "--eta", "2"], "--eta must be in [0, 1]"),
    ("sample_unknown_sampler", ["sample", "--workdir", "{B}/run", "--sampler", "bogus"], "--sampler must be one of"),
    ("sample_option_not_taken", ["sample", "--workdir", "{B}/run", "--eta", "0.5"], "does not take --eta"),
    ("sample_label_not_taken", ["sample", "--workdir", "{B}/run", "--label", "3"], "does not take --label"),
    ("sample_steps_not_taken", ["sample", "--workdir", "{B}/run", "--steps", "10"], "does not take --steps"),
    ("sample_out_under_file", ["sample", "--workdir", "{B}/run", "--out", "{B}/a_file/x"], "not writable"),
    ("sample_out_read_only", ["sample", "--workdir", "{B}/run", "--out", "/proc/self/x"], "not writable"),
    ("sample_out_is_dir", ["sample", "--workdir", "{B}/run", "--out", "{B}/outdir", "--num", "2"],
     "is a directory"),
    ("sample_config_override", ["sample", "--workdir", "{B}/run", "--config.seed=1"], "apply to `gm-jax train`"),
    ("sample_unknown_flag", ["sample", "--workdir", "{B}/run", "--colour", "red"], "unrecognized arguments"),
    # restore and edit (the run is a VAE: everything but the refusal itself fails before the model loads)
    ("restore_model_cannot_restore", R, "family 'vae' cannot restore (it can: train, sample, evaluate)"),
    ("edit_model_cannot_edit", ["edit", "--workdir", "{B}/run", "--input", "{B}/img.png"],
     "family 'vae' cannot edit (it can: train, sample, evaluate)"),
    ("edit_strength_zero", ["edit", "--workdir", "{B}/run", "--input", "{B}/img.png", "--strength", "0"],
     "--strength must be in (0, 1]"),
    ("edit_strength_above_one", ["edit", "--workdir", "{B}/run", "--input", "{B}/img.png", "--strength", "1.5"],
     "--strength must be in (0, 1]"),
    ("edit_strength_nan", ["edit", "--workdir", "{B}/run", "--input", "{B}/img.png", "--strength", "nan"],
     "--strength must be finite"),
    ("edit_invert_with_sampler", ["edit", "--workdir", "{B}/run", "--input", "{B}/img.png", "--invert",
                                  "--sampler", "ddpm"], "drop --sampler"),
    ("edit_invert_with_num", ["edit", "--workdir", "{B}/run", "--input", "{B}/img.png", "--invert", "--num", "3"],
     "--invert is deterministic"),
    ("edit_garbage_input", ["edit", "--workdir", "{B}/run", "--input", "{B}/garbage.png"], "not a readable image"),
    ("edit_out_overwrites_input", ["edit", "--workdir", "{B}/run", "--input", "{B}/img.png", "--out", "{B}/img"],
     "would overwrite the input"),
    ("restore_mask_not_binary", R + ["--mask", "{B}/mask_grey.png"], "is not binary"),
    ("restore_mask_wrong_size", R + ["--mask", "{B}/mask_small.png"], "mask of the image's size"),
    ("restore_mask_missing", R + ["--mask", "{B}/nope.png"], "not found"),
    ("restore_mask_and_mask_kind", R + ["--mask", "{B}/mask_small.png", "--mask_kind", "box"], "both given"),
    ("restore_bad_mask_kind", R + ["--mask_kind", "circle"], "--mask_kind 'circle'"),
    ("restore_random_mask_fraction", R + ["--mask_kind", "random:1.5"], "observed fraction P must be in (0, 1)"),
    ("restore_box_outside", R + ["--mask_kind", "box:20,20,10,10"], "does not fit a 28x28 image"),
    ("restore_scale_not_dividing", RS + ["--task", "superres", "--scale", "5"], "--scale 5 does not divide"),
    ("restore_flag_of_another_task", R + ["--scale", "2"], "--scale applies to --task superres"),
    ("restore_blur_too_wide", RS + ["--task", "deblur", "--blur_sigma", "40"], "too wide for 28x28"),
    ("restore_blur_negative", RS + ["--task", "deblur", "--blur_sigma", "-1"], "--blur_sigma must be finite"),
    ("restore_unknown_task", RS + ["--task", "denoise"], "--task must be one of"),
    ("restore_unknown_method", R + ["--method", "bogus"], "--method must be one of"),
    ("restore_option_of_another_method", R + ["--method", "ddnm", "--zeta", "0.5"],
     "inverse method 'ddnm' does not take --zeta; it takes: --eta"),
    ("restore_option_of_the_default_method", R + ["--resample", "2"], "inverse method 'ddrm' does not take"),
    ("restore_sigma_y_negative", R + ["--sigma_y", "-0.1"], "--sigma_y must be >= 0"),
    ("restore_eta_above_one", R + ["--eta", "1.5"], "--eta must be in [0, 1]"),
    ("restore_num_zero", R + ["--num", "0"], "--num must be >= 1"),
    ("restore_garbage_png", RW + ["--input", "{B}/garbage.png"], "not a readable image"),
    ("restore_garbage_npz", RW + ["--input", "{B}/garbage.npz"], "not a readable .npz"),
    ("restore_npz_without_images", RW + ["--input", "{B}/nokey.npz"], "no array named"),
    ("restore_input_missing", RW + ["--input", "{B}/nope.png"], "not found"),
    ("restore_input_unknown_type", RW + ["--input", "{B}/a_file"], "unknown file type"),
    ("restore_out_overwrites_input", R + ["--out", "{B}/img"], "would overwrite the input"),
    ("restore_out_overwrites_mask", R + ["--mask", "{B}/mask.png", "--out", "{B}/mask"], "would overwrite the input"),
    ("restore_missing_workdir", ["restore", "--workdir", "{B}/nowhere", "--task", "inpaint", "--input",
                                 "{B}/img.png"], "no config.json"),
    ("restore_sampler_flag", R + ["--sampler", "ddim"], "does not take --sampler"),  # sr3 only
    # eval
    ("eval_unknown_metric", ["eval", "--workdir", "{B}/run", "--metrics", "fid,lpips"], "unknown metric 'lpips'"),
    ("eval_num_zero", ["eval", "--workdir", "{B}/run", "--metrics", "fid", "--num", "0"], "--num must be >= 2"),
    ("eval_num_one", ["eval", "--workdir", "{B}/run", "--metrics", "kid", "--num", "1"], "--num must be >= 2"),
    ("eval_num_batches_negative", ["eval", "--workdir", "{B}/run", "--num_batches", "-1"],
     "--num_batches must be >= 0"),
    ("eval_missing_workdir", ["eval", "--workdir", "{B}/nowhere"], "no config.json"),
    ("eval_garbage_config_json", ["eval", "--workdir", "{B}/garbage_run"], "not a valid gm_jax config"),
    ("eval_sampling_option_without_metrics", ["eval", "--workdir", "{B}/run", "--temperature", "0.5"],
     "add --metrics"),
    ("eval_sampling_option_not_taken", ["eval", "--workdir", "{B}/run", "--metrics", "fid", "--num", "8",
                                        "--eta", "0.5"], "does not take --eta"),
    ("eval_more_than_the_split", ["eval", "--workdir", "{B}/run", "--metrics", "fid", "--num", "100000",
                                  "--num_batches", "1"], "fewer than --num"),
    ("eval_config_override", ["eval", "--workdir", "{B}/run", "--config.seed=1"], "apply to `gm-jax train`"),
    # data
    ("data_no_subcommand", ["data"], "required"),
    ("data_prepare_unknown", ["data", "prepare", "imagenet", "--data_dir", "{D}"], "unknown dataset"),
    ("data_prepare_builtin", ["data", "prepare", "two_moons", "--data_dir", "{D}"], "needs no preparation"),
    ("data_prepare_no_files", ["data", "prepare", "mnist", "--data_dir", "{B}/tfds1", "--source_dir", "{B}/empty"],
     "no local files"),
    ("data_prepare_garbage_idx", ["data", "prepare", "mnist", "--data_dir", "{B}/tfds2", "--source_dir",
                                  "{B}/idx_garbage"], "not an IDX file"),
    ("data_prepare_truncated_idx", ["data", "prepare", "fashion_mnist", "--data_dir", "{B}/tfds3", "--source_dir",
                                    "{B}/idx_truncated"], "truncated"),
    ("data_prepare_not_gzip", ["data", "prepare", "mnist", "--data_dir", "{B}/tfds4", "--source_dir",
                               "{B}/idx_notgz"], "mnist"),
    ("data_prepare_garbage_cifar", ["data", "prepare", "cifar10", "--data_dir", "{B}/tfds5", "--source_dir",
                                    "{B}/cifar_garbage"], "cifar"),
    ("data_prepare_data_dir_under_file", ["data", "prepare", "mnist", "--data_dir", "{B}/a_file/tfds",
                                          "--source_dir", "{B}/idx_garbage"], "not writable"),
    # a shipped pretrained model instead of a work directory; exporting a run as one
    ("sample_pretrained_unknown", ["sample", "--pretrained", "nope", "--out", "{B}/o"], "unknown pretrained model"),
    ("sample_pretrained_and_workdir", ["sample", "--pretrained", PRETRAINED, "--workdir", "{B}/run"],
     "not allowed with argument"),
    ("sample_no_workdir_nor_pretrained", ["sample", "--num", "4"], "--workdir --pretrained is required"),
    ("sample_pretrained_num_zero", ["sample", "--pretrained", PRETRAINED, "--num", "0"], "--num must be >= 1"),
    ("sample_pretrained_out_under_file", ["sample", "--pretrained", PRETRAINED, "--out", "{B}/a_file/s"],
     "not writable"),
    ("sample_pretrained_flag_not_taken", ["sample", "--pretrained", PRETRAINED, "--num", "2", "--guidance", "2"],
     "guidance"),
    ("eval_pretrained_unknown", ["eval", "--pretrained", "nope"], "unknown pretrained model"),
    ("eval_pretrained_and_workdir", ["eval", "--pretrained", PRETRAINED, "--workdir", "{B}/run"],
     "not allowed with argument"),
    ("eval_pretrained_out_under_file", ["eval", "--pretrained", PRETRAINED, "--out", "{B}/a_file/e"], "not writable"),
    ("pretrained_no_subcommand", ["pretrained"], "required"),
    ("pretrained_export_no_config", ["pretrained", "export", "--workdir", "{B}/empty", "--name", "x", "--out",
                                     "{B}/g"], "no config.json"),
    ("pretrained_export_garbage_config", ["pretrained", "export", "--workdir", "{B}/garbage_run", "--name", "x",
                                          "--out", "{B}/g"], "not a valid gm_jax config"),
    ("pretrained_export_no_checkpoint", ["pretrained", "export", "--workdir", "{B}/nockpt_run", "--name", "x",
                                         "--out", "{B}/g"], "has no checkpoint"),
    ("pretrained_export_bad_name", ["pretrained", "export", "--workdir", "{B}/run", "--name", "Bad-Name", "--out",
                                    "{B}/g"], "not valid"),
    ("pretrained_export_bad_dtype", ["pretrained", "export", "--workdir", "{B}/run", "--name", "x", "--dtype",
                                     "float64", "--out", "{B}/g"], "--dtype must be one of"),
    ("pretrained_export_out_under_file", ["pretrained", "export", "--workdir", "{B}/run", "--name", "x", "--out",
                                          "{B}/a_file/g"], "not writable"),
    ("pretrained_export_unknown_headline", ["pretrained", "export", "--workdir", "{B}/run", "--name", "x", "--out",
                                            "{B}/g", "--headline", "fid"], "is not a metric of this model"),
    # bench
    ("bench_no_subcommand", ["bench"], "required"),
    ("bench_train_unknown_config", ["bench", "train", "--quick", "--configs", "nope.py", "--out", "{B}/bench"],
     "no config 'nope.py'"),
    ("bench_train_devices_zero", ["bench", "train", "--devices", "0", "--out", "{B}/bench"], "--devices must be >= 1"),
    ("bench_train_k_one", ["bench", "train", "--quick", "--k", "1", "--configs", "vae.py", "--out", "{B}/bench"],
     "--k must be >= 2"),
    ("bench_train_bad_set", ["bench", "train", "--quick", "--configs", "vae.py", "--set", "optim.lr=1", "--out",
                             "{B}/bench"], "unknown config field"),
    ("bench_samplers_unknown_sampler", ["bench", "samplers", "--quick", "--samplers", "bogus", "--out",
                                        "{B}/bench"], "bogus"),
    ("bench_samplers_unknown_net", ["bench", "samplers", "--quick", "--nets", "resnet", "--out", "{B}/bench"],
     "resnet"),
    ("bench_samplers_bad_steps", ["bench", "samplers", "--quick", "--steps", "ten", "--out", "{B}/bench"], "ten"),
    ("bench_out_under_file", ["bench", "samplers", "--quick", "--out", "{B}/a_file/bench"], "not writable"),
    ("bench_samplers_workdir_not_diffusion", ["bench", "samplers", "--quick", "--nets", "none", "--quality_steps",
                                              "none", "--workdir", "{B}/run", "--out", "{B}/bench"], "sampler"),
]


def test_at_least_sixty_cases_over_every_subcommand():
    assert len(CASES) >= 60 and len({name for name, _, _ in CASES}) == len(CASES)
    assert {argv[0] for _, argv, _ in CASES if argv} >= {"train", "sample", "eval", "data", "bench"}


@pytest.mark.parametrize("name, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(name, argv, words, area, data_dir, capsys,
                                                          monkeypatch):
    monkeypatch.chdir(area)
    args = []
    for a in argv:
        if a == "TINY":
            args += tiny(data_dir)
        else:
            args.append(a.replace("{B}", str(area)).replace("{D}", data_dir))
    before = tree_hash(area)
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err[-2000:])
    assert err.startswith("gm-jax: error:") and "\n" not in err and "Traceback" not in err, err
    assert "pybind11" not in err and " at 0x" not in err, err
    if words is not None:
        assert words in err, err
    assert tree_hash(area) == before
