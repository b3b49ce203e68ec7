"""Run-directory rules that need no training: writability probes that create nothing, config.json
reading, and numbers that must not be NaN (samples, evaluation metrics)."""

import math
import os

import jax.numpy as jnp
import pytest

from gm_jax.core.errors import CheckpointError, TrainingDiverged
from gm_jax.core.family import Family
from gm_jax.train.loop import check_finite_metrics
from gm_jax.train.workdir import check_writable, draw_samples, read_config


def family_sampling(value):
    return Family(name="fake", init=lambda k, b: None, train_step=lambda s, b, k: (s, {}),
                  sample=lambda params, key, num: (jnp.full((num, 2), value), {"nfe": 1}))


def test_non_finite_samples_are_refused():
    x, info = draw_samples(family_sampling(0.5), None, 0, 3)
    assert x.shape == (3, 2) and info == {"nfe": 1}
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(TrainingDiverged, match="samples of family 'fake' is not finite"):
            draw_samples(family_sampling(bad), None, 0, 3)


def test_non_finite_evaluation_metrics_name_metric_and_step():
    check_finite_metrics({"eval/nll": 1.0, "eval/bpd": 2.0}, 7)
    with pytest.raises(TrainingDiverged, match="metric eval/nll is nan at step 7"):
        check_finite_metrics({"eval/bpd": 2.0, "eval/nll": math.nan}, 7)


def test_writability_probe_creates_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "run"
    check_writable(str(target))
    assert os.listdir(tmp_path) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        check_writable(str(tmp_path / "file" / "run"))
    assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.parametrize("text, words", [("{", "not a valid gm_jax config"), ("[1]", "not a valid gm_jax config"),
                                         ('{"model": {}}', "no model.family"), ("", "not a valid gm_jax config")])
def test_garbage_config_json_is_one_line(tmp_path, text, words):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=words) as e:
        read_config(str(tmp_path))
    assert "\n" not in str(e.value)
