"""Restoration with trained image-to-image generators (Family.restore of Pix2Pix inpainting and SRGAN): the
output is the generator's translation of the very images the measurement came from (the inpainting model's
own hole, SRGAN's own pooling), a measurement of another operator or a request for another method is one
line, and `gm-jax restore --method pix2pix` runs on a trained run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.cli import main
from gm_jax.core import DataSpec
from gm_jax.core.errors import ConfigError
from gm_jax.diffusion import operators
from gm_jax.gan import tasks
from gm_jax.gan.image_to_image import make_family, model_defaults
from gm_jax.train.config import base_config

SPEC = DataSpec(shape=(8, 8, 1), num_classes=10)
X = np.asarray(jax.random.uniform(jax.random.key(0), (3, 8, 8, 1), minval=-1.0, maxval=1.0))


def family_and_params(task, **fields):
    cfg = base_config()
    cfg.model = model_defaults(task)
    cfg.model.update({"features": 2, **fields})
    fam = make_family(cfg, SPEC)
    state = jax.jit(fam.init)(jax.random.key(1), {"x": jnp.asarray(X), "label": jnp.zeros(3, jnp.int32)})
    return fam, state.params


def one_line(fn, *args, **kwargs):
    with pytest.raises(ConfigError) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_pix2pix_restores_its_own_hole_exactly_as_it_translates():
    fam, params = family_and_params("pix2pix", condition="inpaint", unet_depth=1, patch_layers=1)
    assert fam.can_restore and [o.name for o in fam.restore_options] == ["method"]
    for i in range(3):
        key = jax.random.key(10 + i)
        translated, _ = fam.sample(params, key, 1, source=X[i:i + 1])
        hole = np.asarray(tasks.random_box_mask(key, 1, 8, 8, 0.3, 0.6))[0, ..., 0]
        assert 0 < hole.sum() < 64
        op = operators.mask_operator(hole, (8, 8, 1))
        y = np.asarray(op.A(jnp.asarray(X[i:i + 1])))
        out, info = fam.restore(params, jax.random.key(99), y, op, "pix2pix", 2)
        assert out.shape == (2, 1, 8, 8, 1) and info == {"nfe": 1}
        np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(translated))
        np.testing.assert_array_equal(np.asarray(out[1]), np.asarray(translated))


def test_srgan_restores_its_own_pooling_exactly_as_it_translates():
    fam, params = family_and_params("srgan", scale=2, num_blocks=1, feature_weight=0.0)
    translated, _ = fam.sample(params, jax.random.key(0), 3, source=X)
    op = operators.downsample((8, 8, 1), 2)
    out, info = fam.restore(params, jax.random.key(5), np.asarray(op.A(jnp.asarray(X))), op, None, 1)
    assert info == {"nfe": 1}
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(translated), atol=1e-6)
    assert "x2 average pooling" in one_line(fam.restore, params, None, np.zeros((1, 2, 2, 1)),
                                            operators.downsample((8, 8, 1), 4), "srgan")
    assert "is not what this srgan model does" in one_line(fam.restore, params, None, np.zeros((1, 4, 4, 1)), op,
                                                           "ddrm")
    assert "takes no restoration options" in one_line(fam.restore, params, None, np.zeros((1, 4, 4, 1)), op,
                                                      "srgan", sigma_y=0.1)


def test_pix2pix_refusals_are_one_line():
    fam, params = family_and_params("pix2pix", condition="inpaint", unet_depth=1, patch_layers=1)
    pool = operators.downsample((8, 8, 1), 2)
    assert "pass --task inpaint" in one_line(fam.restore, params, None, np.zeros((1, 4, 4, 1)), pool, "pix2pix")
    box = operators.box_mask((8, 8, 1), 2, 2, 4, 4)
    assert "expected [B, 8, 8, 1]" in one_line(fam.restore, params, None, np.zeros((1, 4, 4, 1)), box, "pix2pix")
    edges, edge_params = family_and_params("pix2pix", condition="edges", unet_depth=1, patch_layers=1)
    assert "model.condition=inpaint" in one_line(edges.restore, edge_params, None, np.zeros((1, 8, 8, 1)), box)
    cyclegan, _ = family_and_params("cyclegan", num_blocks=1, patch_layers=1, domain_size=2)
    assert not cyclegan.can_restore


def test_cli_restore_with_a_trained_pix2pix_run(tmp_path, data_dir, capsys):
    from pathlib import Path

    from PIL import Image

    from gm_jax.data.loading import load_arrays
    from tests.conftest import tiny_run_flags

    configs = Path(__file__).resolve().parents[2] / "experiments" / "configs"
    run = str(tmp_path / "pix2pix")
    assert main(["train", str(configs / "pix2pix_fashion_mnist.py"), "--workdir", run, *tiny_run_flags(data_dir),
                 "--config.model.features=4", "--config.model.unet_depth=2", "--config.model.patch_layers=1",
                 "--config.model.condition=inpaint", "--config.train.eval_batch_size=16"]) == 0
    image = str(tmp_path / "in.png")
    Image.fromarray(load_arrays("fashion_mnist_small", "test", data_dir=data_dir).x[0, ..., 0]).save(image)
    capsys.readouterr()
    out = str(tmp_path / "r")
    argv = ["restore", "--workdir", run, "--task", "inpaint", "--input", image, "--out", out]
    assert main([*argv, "--method", "pix2pix", "--num", "1"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["method"] == "pix2pix" and printed["nfe"] == 1
    restored = np.load(out + ".npz")["restorations"]
    assert restored.shape == (1, 1, 28, 28, 1) and np.all(np.abs(restored) <= 1.0)  # the generator's tanh output
    assert main([*argv, "--method", "ddrm"]) == 2  # a zero-shot method on a GAN: one line
    err = capsys.readouterr().err.strip()
    assert err.startswith("gm-jax: error:") and "--method pix2pix" in err and "\n" not in err
