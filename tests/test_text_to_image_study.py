"""experiments/text_to_image_study.py: the scoring functions on hand-made images with hand-made cuts (exact
accuracies), the shipped classifier on real embedded Fashion-MNIST test images, the prompt sets (held-out
combinations only in the held-out set), and the whole study on a tiny trained pair of runs."""

import importlib.util
import json
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.cli import main as cli_main
from gm_jax.data import captions
from gm_jax.nn.clip import clip_score
from tests.conftest import tiny_run_flags

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
_SPEC = importlib.util.spec_from_file_location("text_to_image_study", ROOT / "experiments" / "text_to_image_study.py")
study = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(study)

DATASET = "fashion_mnist_small"
# hand-made cuts, the same for every class: brightness (mean foreground value) and size (area fraction)
CUTS = {"brightness": [[0.4, 0.7]] * 10, "size": [[0.2, 0.5]] * 10, "foreground_threshold": 0.1}
VALUE = {0: 0.3, 1: 0.55, 2: 0.9}  # brightness index -> pixel value of the square
SIDE = {0: 8, 1: 16, 2: 24}        # size index -> side of the square (area 64, 256, 576 of 784)


def square(brightness: int, size: int) -> np.ndarray:
    """A 28x28x1 image in [0, 1]: a square of side SIDE[size] and value VALUE[brightness] on black."""
    x = np.zeros((28, 28, 1))
    s = SIDE[size]
    x[:s, :s] = VALUE[brightness]
    return x


def test_hand_made_squares_measure_as_built():
    images = np.stack([square(b, z) for b in range(3) for z in range(3)])
    got = captions.measure_attributes(images, np.zeros(9, np.int32), captions.thresholds_from_json(CUTS))
    np.testing.assert_array_equal(got["brightness"], np.repeat([0, 1, 2], 3))
    np.testing.assert_array_equal(got["size"], np.tile([0, 1, 2], 3))


def test_attribute_and_class_accuracies_are_exact_on_hand_made_images():
    # 3 prompts x 2 images: "a small dark bag", "a bright coat", "a large sneaker"
    targets = study.prompt_targets(["a small dark bag", "a bright coat", "a large sneaker"], DATASET)
    np.testing.assert_array_equal(targets["label"], [8, 4, 7])
    np.testing.assert_array_equal(targets["brightness"], [0, 2, -1])
    np.testing.assert_array_equal(targets["size"], [0, -1, 2])
    images = np.stack([square(0, 0), square(2, 0),   # bag: dark hit / miss; small hit, hit
                       square(2, 2), square(2, 1),   # coat: bright hit, hit (size not asked)
                       square(0, 2), square(1, 0)])  # sneaker: large hit, miss (brightness not asked)
    predicted = np.array([8, 8, 4, 0, 3, 7])         # classes hit: rows 0, 1, 2, 5
    seen = []

    def fake_probs(x):
        seen.append((x.min(), x.max()))
        return np.eye(10)[predicted]

    hits = study.score_images(images, targets, 2, captions.thresholds_from_json(CUTS), fake_probs)
    np.testing.assert_allclose(seen, [(-1.0, 0.8)], rtol=1e-6)  # the classifier sees [-1, 1]: 0 -> -1, 0.9 -> 0.8
    np.testing.assert_array_equal(hits["class"], [1, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(hits["brightness_named"], [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(hits["size_named"], [1, 1, 0, 0, 1, 1])
    m = study.summarize(hits)
    assert m["class_accuracy"] == 4 / 6 and m["num_images"] == 6
    assert m["brightness_accuracy"] == 3 / 4 and m["brightness_images"] == 4
    assert m["size_accuracy"] == 3 / 4 and m["size_images"] == 4 and m["clip_score"] is None
    only_coat = study.summarize(hits, np.array([0, 0, 1, 1, 0, 0], bool))
    assert only_coat["class_accuracy"] == 0.5 and only_coat["brightness_accuracy"] == 1.0
    assert only_coat["size_accuracy"] is None and only_coat["size_images"] == 0
    assert study.fidelity(only_coat) == 0.75


def test_clip_terms_average_to_clip_score():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    terms = study.image_clip_scores(a, b)
    assert terms.shape == (7,) and (terms >= 0).all() and (terms == 0).any()
    np.testing.assert_allclose(terms.mean(), float(clip_score(jnp.asarray(a), jnp.asarray(b))), rtol=1e-5)
    np.testing.assert_allclose(study.image_clip_scores(a[:1], 3 * a[:1]), [100.0])


def test_the_shipped_classifier_scores_real_test_images_as_their_class():
    from gm_jax.data.loading import load_arrays
    from gm_jax.metrics.features import load_feature_extractor

    data = load_arrays(DATASET, "test")
    x, y = data.x[:500] / 255.0, data.label[:500]
    classify = load_feature_extractor("fashion_mnist_cnn").class_probs
    hits = study.class_hits(x, y, classify)
    assert hits.mean() > 0.8
    per_class = [hits[y == k].mean() for k in range(10)]
    assert min(per_class) > 0.4 and sorted(per_class)[2] > 0.7, per_class
    # the same images under the wrong labels score near zero
    assert study.class_hits(x, (y + 1) % 10, classify).mean() < 0.1


def test_prompt_sets_keep_heldout_combinations_to_the_heldout_set():
    sets = study.prompt_sets(DATASET, 30, seed=0)
    assert [len(sets[s]) for s in study.SETS] == [30, 30]
    assert sets == study.prompt_sets(DATASET, 30, seed=0)
    pairs = captions.HELDOUT_COMBINATIONS["fashion_mnist"]

    def has_pair(prompt):
        c, b, z = captions.parse_caption(prompt, DATASET)
        return any((w, c) in pairs for w in (b, z) if w is not None)

    train = [e["prompt"] for e in sets["train_style"]]
    assert not any(has_pair(p) or captions.is_heldout(p, DATASET) for p in train)
    assert {captions.parse_caption(p, DATASET)[0] for p in train} == set(range(10))  # 3 prompts a class
    heldout = sets["heldout"]
    assert all(captions.is_heldout(e["prompt"], DATASET) for e in heldout)
    combos = [e["prompt"] for e in heldout if e["kind"] == "heldout_combination"]
    assert len(combos) == 10 and all(has_pair(p) for p in combos)
    assert set(combos) <= set(captions.heldout_prompts(DATASET))
    assert {captions.parse_caption(p, DATASET)[0] for p in combos} == {c for _, c in pairs}
    assert not any(has_pair(e["prompt"]) for e in heldout if e["kind"] == "heldout_phrasing")
    targets = study.prompt_targets(train, DATASET)
    assert (targets["brightness"] >= 0).any() and (targets["size"] >= 0).any()


def test_guidance_lists_and_best_guidance():
    assert study.parse_guidance("1,2,3.5") == [1.0, 2.0, 3.5]
    for bad in ("1,x", "", "1,-2", "1,nan", "2,2"):
        with pytest.raises(study.ConfigError, match="--guidance"):
            study.parse_guidance(bad)
    row = lambda w, acc: {"guidance": w, "sets": {s: {"class_accuracy": acc, "brightness_accuracy": None,
                                                      "size_accuracy": acc} for s in study.SETS}}
    assert study.best_guidance([row(1.0, 0.2), row(2.0, 0.6), row(3.0, 0.6), row(4.0, 0.4)]) == 2.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir, text_to_image_runs):
    base = tmp_path_factory.mktemp("t2i_study")
    (ae, ldm), clip = text_to_image_runs, str(base / "clip")
    assert cli_main(["train", str(CONFIGS / "clip_fashion_mnist.py"), "--workdir", clip, *tiny_run_flags(data_dir),
                     "--config.model.embed_dim=8", "--config.model.width=8", "--config.model.depth=1",
                     "--config.model.num_heads=2", "--config.model.image_channels=(4,)"]) == 0
    return base, ae, ldm, clip


def _finite_unit(x):
    return isinstance(x, float) and math.isfinite(x) and 0.0 <= x <= 1.0


def test_the_study_writes_json_and_figures(runs, capsys):
    base, _, ldm, clip = runs
    out = base / "study"
    assert study.main(["--workdir", ldm, "--clip_workdir", clip, "--guidance", "1,2", "--num", "2", "--steps", "2",
                       "--prompts_per_set", "12", "--max_batch", "16", "--out", str(out)]) == 0
    report = json.loads((out / "text_to_image_study.json").read_text())
    assert (out / "fidelity_vs_guidance.png").stat().st_size > 0 and (out / "prompts_grid.png").stat().st_size > 0
    assert report["step"] == 2 and report["nfe"] == 2 and report["sampler"] == "dpm_solver_2m"
    assert report["num_prompts"] == {"train_style": 12, "heldout": 12} and report["best_guidance"] in (1.0, 2.0)
    assert [r["guidance"] for r in report["results"]] == [1.0, 2.0] and report["command"][1:3] == ["--workdir", ldm]
    assert len(report["grid_prompts"]) == 12
    for r in report["results"]:
        assert len(r["per_prompt"]) == 24 and r["seconds"] > 0
        for group in study.GROUPS:
            m = r["sets"][group]
            assert all(_finite_unit(m[k]) for k in study.ACCURACIES), (group, m)
            assert math.isfinite(m["clip_score"]) and 0.0 <= m["clip_score"] <= 100.0
        assert r["sets"]["train_style"]["num_images"] == 24 and r["sets"]["heldout_combination"]["num_images"] == 8
    assert "| guidance | group |" in capsys.readouterr().out


@pytest.mark.parametrize("case, words", [
    ("bad_guidance", "--guidance '1,x' is not a list of numbers"),
    ("not_ldm", "is a 'kl_autoencoder' run, not a 'latent_diffusion' run"),
    ("missing", "is not a directory"),
    ("clip_not_clip", "--clip_workdir"),
])
def test_bad_input_is_one_line_exit_2(runs, capsys, case, words):
    base, ae, ldm, _ = runs
    argv = {"bad_guidance": ["--workdir", ldm, "--guidance", "1,x"], "not_ldm": ["--workdir", ae],
            "missing": ["--workdir", str(base / "nothing")], "clip_not_clip": ["--workdir", ldm, "--clip_workdir", ae]}
    capsys.readouterr()
    assert study.main([*argv[case], "--num", "1", "--steps", "2", "--out", str(base / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("text_to_image_study: error:") and "\n" not in err and words in err, err
    assert not (base / "bad").exists()
