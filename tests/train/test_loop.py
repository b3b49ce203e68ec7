"""The training machinery, carried by a tiny VAE on the embedded Fashion-MNIST subset: determinism, data
parallelism over 8 simulated devices, fused steps, bit-identical resumption, checkpoints, divergence."""

import json
import os

import jax
import numpy as np
import pytest

from gm_jax.autoencoders.family import model_defaults
from gm_jax.core.errors import TrainingDiverged
from gm_jax.train.checkpoint import Checkpointer, abstract_like
from gm_jax.train.config import base_config
from gm_jax.train.logging import read_metrics
from gm_jax.train.loop import train
from gm_jax.train.workdir import open_run, restore_or_init


def tiny_config(data_dir, **train_overrides):
    cfg = base_config()
    cfg.data.name = "fashion_mnist_small"
    cfg.data.data_dir = data_dir
    cfg.data.batch_size = 16
    cfg.data.num_examples = 96            # 6 batches an epoch: runs cross epoch boundaries
    cfg.data.scale = "zero_one"
    cfg.data.binarize = "dynamic"
    cfg.model = model_defaults()
    cfg.model.hidden = (32,)
    cfg.model.latent_dim = 4
    cfg.model.eval_iwae_k = 4
    cfg.model.iwae_chunk = 4
    cfg.optim.learning_rate = 3e-3
    cfg.optim.ema_decay = 0.9
    cfg.train.update(dict(num_steps=8, log_every=1, checkpoint_every=4, progress=False, eval_batches=1,
                          num_samples=4))
    cfg.train.update(train_overrides)
    return cfg


def losses(workdir):
    return np.array([r["loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "loss" in r])


def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get((state.params, state.opt_state,
                                                                  state.ema_params)))]


def test_same_seed_same_run_and_outputs(tmp_path, data_dir):
    a = train(tiny_config(data_dir), str(tmp_path / "a"))
    b = train(tiny_config(data_dir), str(tmp_path / "b"))
    assert all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))
    la = losses(tmp_path / "a")
    assert len(la) == 8 and np.array_equal(la, losses(tmp_path / "b"))
    assert la[-1] < la[0]
    for name in ("config.json", "loss.png", "samples/step_000008.png", "samples/final.npz"):
        assert (tmp_path / "a" / name).exists(), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "a"))
    assert "eval/nll_iwae" in read_metrics(str(tmp_path / "a" / "metrics.jsonl"))[-1]
    cfg = tiny_config(data_dir)  # a different seed changes the run
    cfg.seed = 1
    train(cfg, str(tmp_path / "d"))
    assert not np.array_equal(losses(tmp_path / "d"), la)


def test_eight_devices_match_one(tmp_path, data_dir):
    assert jax.device_count() == 8
    losses_of = {}
    for n in (1, 8):
        train(tiny_config(data_dir, num_devices=n), str(tmp_path / f"dev{n}"))
        losses_of[n] = losses(tmp_path / f"dev{n}")
    np.testing.assert_allclose(losses_of[8], losses_of[1], rtol=1e-5)


def test_fused_steps_match_single_steps(tmp_path, data_dir):
    single = train(tiny_config(data_dir), str(tmp_path / "k1"))
    fused = train(tiny_config(data_dir, steps_per_call=4), str(tmp_path / "k4"))
    np.testing.assert_allclose(losses(tmp_path / "k4"), losses(tmp_path / "k1"), rtol=1e-5)
    for x, y in zip(leaves(fused), leaves(single), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_killed_and_resumed_run_is_bit_identical(tmp_path, data_dir):
    full = train(tiny_config(data_dir), str(tmp_path / "full"))
    part = str(tmp_path / "part")
    train(tiny_config(data_dir), part, stop_after=6)     # "killed" after step 6; last checkpoint is step 4
    assert Checkpointer(os.path.join(part, "checkpoints")).latest_step() == 4
    assert len(losses(part)) == 6                       # steps 5-6 were logged, then lost with the state
    resumed = train(tiny_config(data_dir), part)
    assert all(np.array_equal(x, y) for x, y in zip(leaves(full), leaves(resumed), strict=True))
    assert np.array_equal(losses(part), losses(tmp_path / "full"))


def test_checkpoint_round_trip_keeps_types(tmp_path, data_dir):
    state = train(tiny_config(data_dir, num_steps=4), str(tmp_path / "r"))
    ckpt = Checkpointer(str(tmp_path / "r" / "checkpoints"))
    back = ckpt.restore(abstract_like(jax.eval_shape(lambda: state)))
    assert jax.tree.structure(back) == jax.tree.structure(state)
    assert type(back.opt_state) is type(state.opt_state)
    assert all(np.array_equal(x, y) for x, y in zip(leaves(back), leaves(state), strict=True))
    assert np.array_equal(jax.random.key_data(back.rng), jax.random.key_data(state.rng))
    assert int(back.step) == 4


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, data_dir):
    cfg = tiny_config(data_dir, num_steps=50, checkpoint_every=1)
    cfg.optim.learning_rate = 1e30
    workdir = str(tmp_path / "nan")
    with pytest.raises(TrainingDiverged) as e:
        train(cfg, workdir)
    msg = str(e.value)
    bad = int(msg.split(" at step ")[1].split(";")[0])
    assert "\n" not in msg and "learning_rate" in msg and " is nan at step " in msg.lower()
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    last = ckpt.latest_step()
    assert (last is None and "no checkpoint" in msg) or last == bad - 1
    if last is not None:  # the kept checkpoint is the good state before the bad step
        state = restore_or_init(open_run(cfg, workdir))
        assert int(state.step) == last
        assert all(np.all(np.isfinite(x)) for x in leaves(state))
    assert json.load(open(os.path.join(workdir, "config.json")))["optim"]["learning_rate"] == 1e30
