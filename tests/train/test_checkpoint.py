"""Checkpoint manifests: a step whose files changed on disk (flipped bits, truncation, a lost file or
manifest) is moved aside and the previous step restored; a checkpoint of another model is refused in one
line and left in place; keep-last-N and bit-identical round trips still hold."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gm_jax.core.errors import CheckpointError
from gm_jax.core.state import TrainState
from gm_jax.train.checkpoint import (
    CORRUPT_DIR,
    MANIFEST,
    Checkpointer,
    abstract_like,
    build_manifest,
    model_mismatch,
    one_line,
    write_manifest,
)

TX = optax.adam(1e-3)


def make_state(step: int, w_shape=(32, 32)) -> TrainState:
    """A distinct state per step: params, adam moments, EMA, an int counter in ``extra``."""
    key = jax.random.PRNGKey(step)
    params = {"w": jax.random.normal(key, w_shape), "b": jnp.full((16,), float(step))}
    state = TrainState.create(jax.random.PRNGKey(100 + step), params, TX, use_ema=True,
                              extra={"count": jnp.arange(5, dtype=jnp.int32) * step})
    mu = jax.tree.map(lambda p: p * 0.5, params)
    opt = (state.opt_state[0]._replace(count=jnp.asarray(step, jnp.int32), mu=mu),) + state.opt_state[1:]
    return state.replace(step=jnp.asarray(step, jnp.int32), opt_state=opt)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(leaves(a), leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def saved(tmp_path):
    """A checkpoint folder holding steps 1, 2, 3; returns (directory, notices list, checkpointer)."""
    directory = str(tmp_path / "checkpoints")
    notices: list[str] = []
    ckpt = Checkpointer(directory, keep=5, notify=notices.append)
    for step in (1, 2, 3):
        ckpt.save(step, make_state(step))
    yield directory, notices, ckpt
    ckpt.close()


def abstract(w_shape=(32, 32)):
    return abstract_like(jax.eval_shape(lambda: make_state(1, w_shape)))


def data_files(folder: str) -> list[str]:
    """The tensorstore chunk files (array bytes) of a step folder, largest first."""
    found = []
    for root, _, names in os.walk(folder):
        if os.path.basename(root) == "d" and "ocdbt.process_" in root:
            found += [os.path.join(root, n) for n in names]
    assert found, f"no ocdbt data files under {folder}"
    return sorted(found, key=os.path.getsize, reverse=True)


def rel(folder, path):
    return os.path.relpath(path, folder).replace(os.sep, "/")


def assert_fell_back(directory, notices, ckpt, reason_part):
    restored = ckpt.restore(abstract(), verb="resuming from")
    assert ckpt.restored_step == 2
    assert_same(restored, make_state(2))
    assert not os.path.exists(os.path.join(directory, "3"))
    moved = os.listdir(os.path.join(directory, CORRUPT_DIR))
    assert len(moved) == 1 and moved[0].startswith("3-")
    assert os.path.exists(os.path.join(directory, CORRUPT_DIR, moved[0], "_CHECKPOINT_METADATA"))
    assert ckpt.steps() == [1, 2]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert notices[0].startswith("checkpoint 3 is corrupt (") and notices[0].endswith("; resuming from 2")
    assert reason_part in notices[0]
    return notices[0]


def test_manifest_lists_every_file_and_orbax_still_lists_the_steps(saved):
    directory, notices, ckpt = saved
    assert ckpt.steps() == [1, 2, 3] and ckpt.latest_step() == 3
    folder = os.path.join(directory, "3")
    with open(os.path.join(folder, MANIFEST)) as f:
        manifest = json.load(f)
    assert manifest == build_manifest(folder, 3)
    paths = {e["path"] for e in manifest["files"]}
    assert "_CHECKPOINT_METADATA" in paths and MANIFEST not in paths
    assert {rel(folder, p) for p in data_files(folder)} <= paths
    assert not any(n.endswith(".tmp") for n in os.listdir(folder))
    assert ckpt.verified_steps() == [1, 2, 3] and ckpt.verify(3) is None


def test_good_checkpoint_restores_bit_identically(saved):
    directory, notices, ckpt = saved
    restored = ckpt.restore(abstract())
    assert ckpt.restored_step == 3 and notices == []
    assert_same(restored, make_state(3))
    assert isinstance(restored, TrainState)
    assert type(restored.opt_state[0]) is type(make_state(3).opt_state[0])
    assert_same(ckpt.restore(abstract(), step=1), make_state(1))
    assert ckpt.restored_step == 1


def test_two_flipped_bits_fall_back_to_the_previous_step(saved):
    directory, notices, ckpt = saved
    folder = os.path.join(directory, "3")
    target = data_files(folder)[0]
    with open(target, "r+b") as f:
        data = bytearray(f.read())
        middle = len(data) // 2
        data[middle] ^= 0x10
        data[middle + 7] ^= 0x01
        f.seek(0)
        f.write(data)
    assert ckpt.verify(3) == f"{rel(folder, target)}: hash mismatch"
    line = assert_fell_back(directory, notices, ckpt, "hash mismatch")
    assert f"moved to {os.path.join(directory, CORRUPT_DIR, '3-hash-mismatch')}" in line


def test_flipped_bits_are_not_caught_by_orbax_alone(saved):
    """Why the manifest exists: two flipped bits in a chunk either make tensorstore raise or decode into other
    numbers without an error; once the step is re-sealed (as if the save itself had written them), restore
    either moves it aside or returns different values, never step 3's."""
    directory, notices, ckpt = saved
    folder = os.path.join(directory, "3")
    target = data_files(folder)[0]
    with open(target, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0x10
        data[len(data) // 2 + 7] ^= 0x01
        f.seek(0)
        f.write(data)
    write_manifest(folder, 3)
    restored = ckpt.restore(abstract())
    if ckpt.restored_step == 3:
        assert any((x != y).any() for x, y in zip(leaves(restored), leaves(make_state(3)), strict=True))
    else:
        assert ckpt.restored_step == 2 and "restore failed" in notices[0]


def test_truncated_file_falls_back(saved):
    directory, notices, ckpt = saved
    folder = os.path.join(directory, "3")
    target = data_files(folder)[0]
    size = os.path.getsize(target)
    with open(target, "r+b") as f:
        f.truncate(size - 10)
    assert ckpt.verify(3) == f"{rel(folder, target)}: truncated ({size - 10} of {size} bytes)"
    assert_fell_back(directory, notices, ckpt, "truncated")


def test_missing_manifest_falls_back(saved):
    directory, notices, ckpt = saved
    os.remove(os.path.join(directory, "3", MANIFEST))
    assert ckpt.verify(3) == "manifest missing"
    assert_fell_back(directory, notices, ckpt, "(manifest missing)")


def test_missing_file_falls_back(saved):
    directory, notices, ckpt = saved
    folder = os.path.join(directory, "3")
    target = data_files(folder)[-1]
    os.remove(target)
    assert ckpt.verify(3) == f"{rel(folder, target)}: file missing"
    assert_fell_back(directory, notices, ckpt, "file missing")


def test_step_orbax_cannot_read_is_moved_aside_too(saved):
    """Bytes that match the manifest but that orbax cannot read (a save that wrote garbage)."""
    directory, notices, ckpt = saved
    folder = os.path.join(directory, "3")
    with open(os.path.join(folder, "default", "_METADATA"), "w") as f:
        f.write("{not json")
    write_manifest(folder, 3)
    assert ckpt.verify(3) is None
    assert_fell_back(directory, notices, ckpt, "restore failed")


def test_all_steps_corrupt_raise_one_line(saved):
    directory, notices, ckpt = saved
    for step in (1, 2, 3):
        os.remove(os.path.join(directory, str(step), MANIFEST))
    os.makedirs(os.path.join(directory, "2", "extra"))   # a manifest-less directory stays corrupt with others
    with open(os.path.join(directory, "1", MANIFEST), "w") as f:
        f.write("garbage")
    with pytest.raises(CheckpointError) as e:
        ckpt.restore(abstract())
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"no checkpoint in {directory} verifies (3: manifest missing; ")
    assert "1: manifest unreadable" in msg and "--workdir" in msg and "move a step folder back" in msg
    assert ckpt.steps() == [] and len(os.listdir(os.path.join(directory, CORRUPT_DIR))) == 3
    assert notices == []  # the one error line says it all


@pytest.mark.parametrize("w_shape, leaf", [((16, 32), "params.w: stored (32, 32), this model (16, 32)"),
                                           (None, "params.v: not in the checkpoint")])
def test_different_model_is_refused_and_not_moved(saved, w_shape, leaf):
    directory, notices, ckpt = saved
    if w_shape is None:
        target = abstract()
        target = target.replace(params={**target.params, "v": target.params["b"]})
    else:
        target = abstract(w_shape)
    with pytest.raises(CheckpointError) as e:
        ckpt.restore(target)
    msg = str(e.value)
    assert msg == (f"checkpoint 3 in {directory} belongs to a different model ({leaf}); use the config it was "
                   "trained with, or a new --workdir")
    assert "pybind11" not in msg and "0x" not in msg and "\n" not in msg
    assert ckpt.steps() == [1, 2, 3] and not os.path.exists(os.path.join(directory, CORRUPT_DIR))
    assert notices == []


def test_model_mismatch_agrees_with_a_matching_target(saved):
    """No false alarm: the stored metadata tree of a state matches that state's abstract target."""
    directory, notices, ckpt = saved
    metadata = ckpt._manager.item_metadata(3)
    assert model_mismatch(metadata.tree, abstract()) is None
    assert model_mismatch(metadata.tree, abstract((32, 31))) == "params.w: stored (32, 32), this model (32, 31)"


def test_keep_last_n_with_manifests(tmp_path):
    directory = str(tmp_path / "checkpoints")
    ckpt = Checkpointer(directory, keep=2, notify=lambda line: None)
    for step in (1, 2, 3, 4):
        ckpt.save(step, make_state(step))
    assert ckpt.steps() == [3, 4] and ckpt.verified_steps() == [3, 4]
    assert sorted(os.listdir(directory)) == ["3", "4"]
    for step in (3, 4):
        with open(os.path.join(directory, str(step), MANIFEST)) as f:
            assert json.load(f)["step"] == step
    os.remove(os.path.join(directory, "4", MANIFEST))
    assert_same(ckpt.restore(abstract()), make_state(3))    # 4 moved aside; saving goes on from there
    ckpt.save(4, make_state(40))
    ckpt.save(5, make_state(5))
    assert ckpt.steps() == [4, 5] and ckpt.verified_steps() == [4, 5]
    assert os.listdir(os.path.join(directory, CORRUPT_DIR)) == ["4-manifest-missing"]
    assert_same(ckpt.restore(abstract(), step=4), make_state(40))
    ckpt.close()


def test_directory_without_any_manifest_is_used_unverified(saved):
    """A work directory written before manifests existed still resumes (orbax marked its steps complete)."""
    directory, notices, ckpt = saved
    for step in (1, 2, 3):
        os.remove(os.path.join(directory, str(step), MANIFEST))
    assert ckpt.verify(3) is None
    assert_same(ckpt.restore(abstract()), make_state(3))
    assert notices == [] and ckpt.restored_step == 3


def test_explicit_corrupt_step_raises_without_moving(saved):
    directory, notices, ckpt = saved
    os.remove(data_files(os.path.join(directory, "2"))[0])
    with pytest.raises(CheckpointError, match=r"^checkpoint 2 in .* is corrupt \(.*: file missing\); "):
        ckpt.restore(abstract(), step=2)
    with pytest.raises(CheckpointError, match=r"no checkpoint 7 in .*; choose one of \[1, 2, 3\]"):
        ckpt.restore(abstract(), step=7)
    assert ckpt.steps() == [1, 2, 3] and notices == []


def test_one_line_strips_binding_reprs():
    raw = ("TypeError: __init__(): incompatible arguments <bound method pybind11_object.__init__ of "
           "<tensorstore.Spec object at 0x7f3a2b1c>> at 0xdeadbeef\n  full dump\n" + "x" * 500)
    line = one_line(raw)
    assert line == "TypeError: __init__(): incompatible arguments at"
    assert len(one_line("y" * 500, limit=50)) == 50
