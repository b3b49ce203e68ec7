"""vocabulary.json and caption_thresholds.json of a captioned run: written beside config.json, read back
equal, and a run whose saved vocabulary (or attribute cuts) differs from its pipeline's is refused in one
line; an older run without the files still opens."""

import json
import os

import pytest

from gm_jax.core.errors import CheckpointError
from gm_jax.core.tokenizer import Vocabulary, from_json
from gm_jax.data import captions, data_defaults, make_pipeline
from gm_jax.train.config import base_config
from gm_jax.train.families import family_module
from gm_jax.train.workdir import (
    THRESHOLDS_FILE,
    VOCABULARY_FILE,
    check_caption_files,
    open_run,
    write_caption_files,
)


@pytest.fixture(scope="module")
def pipe(data_dir):
    c = data_defaults()
    c.data_dir, c.batch_size, c.captions = data_dir, 8, True
    return make_pipeline(c, seed=0)


def one_line_error(workdir, pipe, words):
    with pytest.raises(CheckpointError, match=words) as err:
        check_caption_files(str(workdir), pipe)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_files_round_trip(tmp_path, pipe):
    check_caption_files(str(tmp_path), pipe)  # an old run without the files opens
    write_caption_files(str(tmp_path), pipe)
    assert sorted(os.listdir(tmp_path)) == [THRESHOLDS_FILE, VOCABULARY_FILE]
    assert from_json((tmp_path / VOCABULARY_FILE).read_text()) == pipe.spec.text.vocabulary
    saved = captions.thresholds_from_json(json.loads((tmp_path / THRESHOLDS_FILE).read_text()))
    for key in ("brightness", "size"):
        assert (saved[key] == pipe.caption_thresholds[key]).all()
    check_caption_files(str(tmp_path), pipe)
    write_caption_files(str(tmp_path), pipe)  # rewriting the same content is harmless
    check_caption_files(str(tmp_path), pipe)


def test_changed_vocabulary_or_cuts_are_refused(tmp_path, pipe):
    write_caption_files(str(tmp_path), pipe)
    words = pipe.spec.text.vocabulary.words
    (tmp_path / VOCABULARY_FILE).write_text(json.dumps({"format": "gm_jax.vocabulary", "version": 1,
                                                        "words": list(words[:-1]) + ["zebra"]}))
    message = one_line_error(tmp_path, pipe, "vocabulary.json differs from the captions of "
                                             "data.name='fashion_mnist_small'")
    assert "caption code changed" in message and "zebra" in message
    write_caption_files(str(tmp_path), pipe)
    data = json.loads((tmp_path / THRESHOLDS_FILE).read_text())
    data["size"][3][0] += 1e-3
    (tmp_path / THRESHOLDS_FILE).write_text(json.dumps(data))
    one_line_error(tmp_path, pipe, "caption_thresholds.json differs from the attribute cuts")


@pytest.mark.parametrize("name, text", [(VOCABULARY_FILE, "{"), (VOCABULARY_FILE, "[1]"),
                                        (VOCABULARY_FILE, '{"format": "gm_jax.vocabulary", "version": 1, '
                                                          '"words": ["a"]}'),
                                        (THRESHOLDS_FILE, "{"), (THRESHOLDS_FILE, '{"size": 1}')])
def test_garbage_files_are_one_line(tmp_path, pipe, name, text):
    write_caption_files(str(tmp_path), pipe)
    (tmp_path / name).write_text(text)
    one_line_error(tmp_path, pipe, name)


def test_uncaptioned_run_writes_nothing(tmp_path, data_dir):
    c = data_defaults()
    c.data_dir, c.batch_size = data_dir, 8
    plain = make_pipeline(c, seed=0)
    write_caption_files(str(tmp_path), plain)
    assert os.listdir(tmp_path) == []


def test_open_run_checks_the_saved_vocabulary(tmp_path, data_dir, pipe):
    cfg = base_config()
    cfg.model = family_module("gmm").model_defaults()
    cfg.model.family = "gmm"
    cfg.data.update({"data_dir": data_dir, "batch_size": 8, "captions": True})
    cfg.train.num_devices = 1
    write_caption_files(str(tmp_path), pipe)
    run = open_run(cfg, str(tmp_path))
    assert run.pipeline.spec.text.vocabulary == pipe.spec.text.vocabulary
    run.checkpointer.close()
    other = Vocabulary(pipe.spec.text.vocabulary.words + ("zebra",))
    (tmp_path / VOCABULARY_FILE).write_text(json.dumps({"format": "gm_jax.vocabulary", "version": 1,
                                                        "words": list(other.words)}))
    with pytest.raises(CheckpointError, match="differs from the captions"):
        open_run(cfg, str(tmp_path))


def test_a_config_saved_before_the_caption_fields_still_resumes():
    from gm_jax.train.workdir import ADDED_FIELD_DEFAULTS, _diff_configs

    new = {"data": {"name": "fashion_mnist_small", "captions": False, "caption_attributes": True,
                    "caption_max_length": 0, "caption_bos_eos": False}}
    old = {"data": {"name": "fashion_mnist_small"}}
    assert _diff_configs(old, new) == []
    assert set(ADDED_FIELD_DEFAULTS) == {f"data.{k}" for k in new["data"] if k != "name"}
    assert _diff_configs(old, {"data": {**new["data"], "captions": True}}) == ["data.captions"]
