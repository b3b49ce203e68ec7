"""Config overrides: types follow the field, unknown fields and bad values give one-line errors."""

import ml_collections
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.train.config import apply_overrides, config_from_json, config_to_json


def _cfg():
    return ml_collections.ConfigDict(dict(
        seed=0, data=dict(name="x", batch_size=8, dequantize=False),
        model=dict(family="vae", channels=(8, 16), note=""),
        optim=dict(learning_rate=1e-3), train=dict(num_steps=10)))


def test_overrides_parse_by_field_type():
    cfg = apply_overrides(_cfg(), ["--config.optim.learning_rate=3e-4", "--config.train.num_steps=7",
                                   "--config.data.dequantize=true", "--config.model.channels=(4,8,16)",
                                   "--config.model.note=hello world", "--config.seed=5"])
    assert cfg.optim.learning_rate == pytest.approx(3e-4)
    assert cfg.train.num_steps == 7 and isinstance(cfg.train.num_steps, int)
    assert cfg.data.dequantize is True
    assert tuple(cfg.model.channels) == (4, 8, 16)
    assert cfg.model.note == "hello world" and cfg.seed == 5


def test_overrides_leave_the_original_unchanged():
    base = _cfg()
    apply_overrides(base, ["--config.seed=3"])
    assert base.seed == 0


@pytest.mark.parametrize("arg, words", [
    ("--config.optim.lr=1", "unknown config field 'config.optim.lr'"),
    ("--config.nosection.x=1", "unknown config field"),
    ("--config.train.num_steps=ten", "expects a int"),
    ("--config.data.dequantize=maybe", "expects a bool"),
    ("--config.optim=3", "is a section"),
    ("--config.seed", "overrides look like"),
])
def test_bad_overrides_give_one_line(arg, words):
    with pytest.raises(ConfigError) as e:
        apply_overrides(_cfg(), [arg])
    assert words in str(e.value) and "\n" not in str(e.value)


def test_json_round_trip():
    cfg = _cfg()
    back = config_from_json(config_to_json(cfg))
    assert back.optim.learning_rate == cfg.optim.learning_rate and list(back.model.channels) == [8, 16]
