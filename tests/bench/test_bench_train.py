"""`gm-jax bench train` on its cheapest config: images/s bookkeeping, k fused steps computing the same
losses as k single steps, data parallelism over 2 and 8 simulated devices computing one device's losses,
and the unsupported bfloat16 / absent PyTorch rows stated rather than silently dropped."""

import json
import os

import pytest

from gm_jax.cli import main


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bench") / "train")
    assert main(["bench", "train", "--quick", "--out", out, "--configs", "gmm_two_moons.py", "--k", "2",
                 "--repeats", "1", "--min_time", "0", "--scaling", "gmm_two_moons.py",
                 "--set", "data.batch_size=256"]) == 0
    with open(os.path.join(out, "train.json")) as f:
        data = json.load(f)
    data["md"] = open(os.path.join(out, "train.md")).read()
    return data


def test_train_records(payload):
    rows = [r for r in payload["records"] if r["config"] == "gmm_two_moons.py" and r["status"] == "ok"]
    one = next(r for r in rows if r["steps_per_call"] == 1 and r["devices"] == 1)
    fused = next(r for r in rows if r["steps_per_call"] == 2)
    for r in (one, fused):
        assert r["images_per_s"] == pytest.approx(r["batch"] * r["steps_per_call"] / r["call_s"])
        assert r["compile_s"] > 0 and r["family"] == "gmm" and r["dtype"] == "float32"
    # one call of 2 fused steps = 2 calls of one step (same batches 0 and 1, same keys)
    assert fused["loss_max_abs_diff_vs_single_steps"] < 1e-5
    assert fused["speedup_vs_1"] == pytest.approx(fused["images_per_s"] / one["images_per_s"])
    scaled = {r["devices"]: r for r in rows if r["steps_per_call"] == 1}
    assert set(scaled) == {1, 2, 8}
    for n in (2, 8):
        assert scaled[n]["loss_max_abs_diff_vs_1dev"] < 1e-4 * max(1.0, abs(one["first_losses"][0]))
        assert "correctness only" in scaled[n]["note"]


def test_unsupported_rows_are_stated(payload):
    bf16 = [r for r in payload["records"] if r.get("dtype") == "bfloat16"]
    assert bf16 and all(r["status"] in ("unsupported", "ok") for r in bf16)
    torch_row = next(r for r in payload["records"] if r["config"] == "pytorch")
    assert torch_row["status"] == "skipped" and torch_row["note"]
    assert payload["environment"]["device_count"] == 8 and payload["k"] == 2
    assert "| config | family |" in payload["md"] and "gmm_two_moons.py" in payload["md"]


def test_bad_dtype_is_one_line(capsys):
    assert main(["bench", "train", "--quick", "--dtype", "float16", "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gm-jax: error:") and "float16" in err and "\n" not in err
