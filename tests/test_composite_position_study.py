"""experiments/composite_position_study.py: the position scores on hand-made predictions (exact), the halves
of real two-object canvases scored by the shipped classifier (and their mirror images scored as swapped), the
prompts, and the whole study on a tiny composite run."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from gm_jax.cli import main as cli_main
from gm_jax.data import captions
from tests.conftest import tiny_run_flags

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("composite_position_study",
                                               ROOT / "experiments" / "composite_position_study.py")
study = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(study)
DATASET = "fashion_mnist_small"


def test_position_scores_are_exact_on_hand_made_predictions():
    wanted = np.array([[7, 8]] * 5)
    predicted = np.array([[7, 8], [8, 7], [7, 0], [0, 8], [1, 2]])
    got = study.position_scores(predicted, wanted)
    assert got == {"position_accuracy": 0.2, "left_accuracy": 0.4, "right_accuracy": 0.4, "swapped": 0.2,
                   "presence": 0.4, "num_images": 5}


def test_prompts_cover_every_ordered_pair_and_parse_back():
    prompts, pairs = study.pair_prompts(DATASET)
    assert len(prompts) == 90 and len({tuple(p) for p in pairs}) == 90 and (pairs[:, 0] != pairs[:, 1]).all()
    parsed = np.array([captions.parse_composite_caption(p, DATASET) for p in prompts])
    np.testing.assert_array_equal(parsed, pairs)
    assert prompts[0] == "a t-shirt on the left and a trousers on the right"
    assert prompts[1] == "a pullover on the right and a t-shirt on the left"
    assert prompts[8] == "t-shirt on the left, ankle boot on the right"
    assert prompts[81] == "an ankle boot on the left and a t-shirt on the right"


def test_real_canvases_score_as_placed_and_their_mirrors_as_swapped():
    from gm_jax.data.loading import load_arrays
    from gm_jax.metrics.features import load_feature_extractor

    data = load_arrays(DATASET, "test")
    canvas, left, right, _ = captions.composite_pairs(data.x[:500], data.label[:500], 0, 400, DATASET)
    classify = load_feature_extractor("fashion_mnist_cnn").class_probs
    wanted = np.stack([left, right], 1)
    placed = study.position_scores(study.half_predictions(canvas / 255.0, classify), wanted)
    assert placed["position_accuracy"] > 0.65 and placed["swapped"] < 0.02, placed
    mirrored = np.concatenate([canvas[:, :, 28:], canvas[:, :, :28]], axis=2) / 255.0
    flipped = study.position_scores(study.half_predictions(mirrored, classify), wanted)
    assert flipped["swapped"] == placed["position_accuracy"] and flipped["position_accuracy"] < 0.02, flipped
    assert flipped["presence"] == placed["presence"]


@pytest.fixture(scope="module")
def composite_run(text_to_image_runs, data_dir, tmp_path_factory):
    ae, one_object = text_to_image_runs
    base = tmp_path_factory.mktemp("composite")
    ldm = str(base / "ldm")
    assert cli_main(["train", str(ROOT / "experiments" / "configs" / "ldm_composite_fashion_mnist.py"),
                     "--workdir", ldm, *tiny_run_flags(data_dir), f"--config.model.first_stage={ae}",
                     "--config.model.unet=tiny", "--config.model.attn_resolutions=(7,)", "--config.model.num_heads=2",
                     "--config.model.text_width=8", "--config.model.text_depth=1", "--config.model.text_heads=2"]) == 0
    return base, ldm, one_object


def test_the_study_writes_json_and_figures(composite_run, capsys):
    base, ldm, _ = composite_run
    out = base / "study"
    assert study.main(["--workdir", ldm, "--guidance", "1,3", "--num", "1", "--steps", "2", "--max_batch", "32",
                       "--out", str(out)]) == 0
    report = json.loads((out / "composite_position_study.json").read_text())
    assert (out / "position_vs_guidance.png").stat().st_size > 0 and (out / "composite_grid.png").stat().st_size > 0
    assert report["step"] == 2 and report["nfe"] == 2 and report["num_prompts"] == 90
    assert [r["guidance"] for r in report["results"]] == [1.0, 3.0] and len(report["grid_prompts"]) == 12
    for r in report["results"]:
        assert r["num_images"] == 90 and abs(r["presence"] - r["position_accuracy"] - r["swapped"]) < 1e-12
        assert all(0.0 <= r[m] <= 1.0 for m in study.METRICS)
    assert "| guidance | position acc |" in capsys.readouterr().out


@pytest.mark.parametrize("case, words", [("one_object", "was not trained on two-object canvases"),
                                         ("bad_guidance", "is not a list of numbers")])
def test_bad_input_is_one_line_exit_2(composite_run, capsys, case, words):
    base, ldm, one_object = composite_run
    argv = {"one_object": ["--workdir", one_object], "bad_guidance": ["--workdir", ldm, "--guidance", "x"]}[case]
    capsys.readouterr()
    assert study.main([*argv, "--out", str(base / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("composite_position_study: error:") and "\n" not in err and words in err, err
    assert not (base / "bad").exists()
