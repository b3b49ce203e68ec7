"""The JSON snapshot of the families' declared options: equal to the live declarations, a faithful round
trip, a fallback when it is broken, and no JAX import for ``gm-jax SUB --help`` or for argument errors."""

import subprocess
import sys

import numpy as np
import pytest

from gm_jax.core.options import Option
from gm_jax.train import declared


def test_snapshot_equals_the_live_declarations():
    live = declared.live_tables()
    for command in declared.TABLES:
        snap = declared.declared_table(command)
        assert snap == live[command], (f"gm_jax/train/declared_options.json is stale for {command!r}; "
                                       "regenerate it with `python -m gm_jax.train.declared`")
    assert declared.restore_methods() == declared.live_methods(), (
        "gm_jax/train/declared_options.json is stale for the restoration methods; regenerate it with "
        "`python -m gm_jax.train.declared`")
    assert "sampler" in live["sample"] and "steps" in live["sample"]  # the table is not trivially empty


def test_option_round_trip_keeps_every_field():
    o = Option("w", "float", "a weight", 0.5, low=0.0, high=1.0, low_open=True, choices=())
    s = Option("mode", "str", "a mode", "a", choices=("a", "b"))
    for opt in (o, s):
        assert declared.option_from_json(declared.option_to_json(opt)) == opt


@pytest.mark.parametrize("content", [None, "not json", '{"edit": {}}'])
def test_a_missing_or_broken_snapshot_falls_back_to_the_live_declarations(tmp_path, content):
    path = tmp_path / "declared_options.json"
    if content is not None:
        path.write_text(content)
    assert declared.declared_table("restore", path) == declared.live_tables()["restore"]
    assert declared.restore_methods(path) == declared.live_methods()


def _run_cli(argv: list) -> tuple[str, str, int]:
    code = (f"import sys\nfrom gm_jax.cli import main\nrc = main({argv!r})\n"
            "print('JAX' if 'jax' in sys.modules else 'NOJAX', rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout, out.stderr, out.stdout.split()[-2:]


@pytest.mark.parametrize("command", ["sample", "eval", "restore", "edit"])
def test_subcommand_help_imports_no_jax(command):
    stdout, _, (jax_flag, rc) = _run_cli([command, "--help"])
    assert (jax_flag, rc) == ("NOJAX", "0")
    assert "--guidance" in stdout  # the family-declared flags are there


@pytest.mark.parametrize("argv,message", [
    (["sample", "--workdir", "nowhere", "--num", "0"], "--num must be >= 1"),
    (["sample", "--workdir", "nowhere", "--guidance", "nan"], "--guidance must be finite"),
    (["eval", "--workdir", "nowhere", "--num_batches", "-1"], "--num_batches must be >= 0"),
    (["restore", "--workdir", "nowhere", "--task", "inpaint", "--input", "missing.png"], "missing.png not found"),
    (["restore", "--workdir", "nowhere", "--task", "inpaint", "--method", "ddnm", "--zeta", "2", "--input",
      "missing.png"], "'ddnm' does not take --zeta"),
    (["restore", "--workdir", "nowhere", "--task", "superres", "--mask_kind", "box", "--input", "missing.png"],
     "--mask_kind applies to --task inpaint"),
    (["restore", "--workdir", "nowhere", "--task", "inpaint", "--input", "__IMAGE__"], "nowhere has no config.json"),
    (["restore", "--workdir", "nowhere", "--task", "inpaint", "--mask_kind", "box:20,20,10,10", "--input",
      "__IMAGE__"], "does not fit a 8x8 image"),
    (["restore", "--workdir", "nowhere", "--task", "superres", "--scale", "3", "--input", "__IMAGE__"],
     "--scale 3 does not divide"),
    (["edit", "--workdir", "nowhere", "--input", "missing.png"], "missing.png not found"),
    (["edit", "--workdir", "nowhere", "--input", "__IMAGE__", "--strength", "2"], "--strength must be in (0, 1]"),
    (["edit", "--workdir", "nowhere", "--input", "__IMAGE__"], "nowhere has no config.json"),
])
def test_argument_errors_answer_before_jax_is_imported(argv, message, tmp_path):
    from PIL import Image

    image = tmp_path / "input.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    _, stderr, (jax_flag, rc) = _run_cli([str(image) if a == "__IMAGE__" else a for a in argv])
    assert (jax_flag, rc) == ("NOJAX", "2")
    assert stderr.startswith("gm-jax: error: ") and message in stderr and stderr.count("\n") == 1
