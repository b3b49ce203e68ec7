"""Sample quality of a trained run: FID, KID, Inception Score and precision/recall/density/coverage of
model samples against the real eval split, in the feature space of a shipped feature network (offline),
plus a nearest-neighbour picture for spotting memorization."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from gm_jax.core.errors import ConfigError, check_choice
from gm_jax.core.rng import purpose_key, seed_key
from gm_jax.core.state import TrainState
from gm_jax.metrics import fid, inception_score, kid, load_feature_extractor, prdc
from gm_jax.train.images import save_image_grid
from gm_jax.train.workdir import Run, draw_samples

SAMPLE_METRICS = ("fid", "kid", "is", "prdc")
# The feature network that fits each dataset (28x28x1 images); users may pass any FeatureExtractor.
EXTRACTOR_FOR_DATASET = {"fashion_mnist": "fashion_mnist_cnn", "fashion_mnist_small": "fashion_mnist_cnn",
                         "mnist": "mnist_cnn"}


def parse_metrics(text: str) -> list[str]:
    """``"fid,kid"`` -> ``["fid", "kid"]``; every name must be one of :data:`SAMPLE_METRICS`."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    for name in names:
        check_choice("metric", name, SAMPLE_METRICS)
    return names


def to_extractor_range(x: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Map images from the data's ``value_range`` to the feature networks' [-1, 1] (explicit, never silent)."""
    lo, hi = value_range
    return (np.clip(np.asarray(x, np.float32), lo, hi) - lo) / (hi - lo) * 2.0 - 1.0


def real_images(run: Run, num: int) -> np.ndarray:
    """The first ``num`` images of the run's eval split, in the data's value range."""
    x = run.pipeline.eval_images(num)["x"]
    if len(x) < num:
        raise ConfigError(f"the eval split has {len(x)} images, fewer than --num {num}; lower --num")
    return x


def sample_quality(run: Run, state: TrainState, metrics: list[str], num: int, seed: int = 0,
                   extractor: Any = None, figure_path: str | None = None, **sample_kwargs: Any) -> dict:
    """Report ``{metric: {"value", "std"?}}`` for ``num`` samples against ``num`` real eval images.

    ``extractor`` defaults to the shipped network for the run's dataset. FID is the Fréchet distance of
    feature statistics (Heusel et al. 2017), KID the unbiased polynomial-kernel MMD² over subsets
    (Bińkowski et al. 2018), IS from the extractor's class probabilities (Salimans et al. 2016), PRDC with
    k = 5 (Kynkäänniemi et al. 2019; Naeem et al. 2020).
    """
    spec = run.pipeline.spec
    if extractor is None:
        name = EXTRACTOR_FOR_DATASET.get(run.config.data.name)
        if name is None:
            raise ConfigError(f"no shipped feature network fits dataset {run.config.data.name!r}; sample-quality "
                              f"metrics exist for {', '.join(sorted(EXTRACTOR_FOR_DATASET))}")
        extractor = load_feature_extractor(name)
    if not spec.is_image:
        raise ConfigError(f"sample-quality metrics need image data, got shape {spec.shape}")
    if num < 2:
        raise ConfigError(f"--num must be >= 2 for sample-quality metrics, got {num}")
    real = real_images(run, num)  # first: a too-large --num fails before any sampling
    fake, info = draw_samples(run.family, state.sampling_params(), seed, num, **sample_kwargs)
    fake_x, real_x = to_extractor_range(fake, spec.value_range), to_extractor_range(real, spec.value_range)
    f_fake, f_real = extractor.features(fake_x), extractor.features(real_x)
    report: dict[str, Any] = {}
    if "fid" in metrics:
        report["fid"] = {"value": fid(f_real, f_fake)}
    if "kid" in metrics:
        size = min(num // 2, 1000)  # subsets smaller than the sets, so their spread (std) means something
        mean, std = kid(f_real, f_fake, purpose_key(seed_key(seed), "kid"), num_subsets=100, subset_size=size)
        report["kid"] = {"value": float(mean), "std": float(std), "subset_size": size}
    if "is" in metrics:
        mean, std = inception_score(extractor.class_probs(fake_x), num_splits=min(10, num))
        report["is"] = {"value": float(mean), "std": float(std)}
    if "prdc" in metrics:
        for k, v in prdc(f_real, f_fake, k=5).items():
            report[k] = {"value": float(v)}
    if figure_path:
        nearest_neighbour_figure(fake, real, f_fake, f_real, figure_path, spec.value_range)
    meta = {"num_samples": num, "extractor": {"name": extractor.name, "checksum": extractor.checksum}}
    meta.update({f"sampler_{k}": v for k, v in info.items()})
    return {"metrics": report, **meta}


def nearest_neighbour_figure(fake: np.ndarray, real: np.ndarray, f_fake: np.ndarray, f_real: np.ndarray,
                             path: str, value_range: tuple[float, float], rows: int = 8, neighbours: int = 5) -> str:
    """Rows: a sample, then its ``neighbours`` nearest real images in feature space (memorization check:
    a sample identical to its nearest neighbour was copied from the data)."""
    rows = min(rows, len(fake))
    d = ((f_fake[:rows, None, :] - f_real[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1)[:, :neighbours]
    tiles = np.concatenate([np.concatenate([fake[i:i + 1], real[nearest[i]]]) for i in range(rows)])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return save_image_grid(tiles, path, value_range, ncols=neighbours + 1)


__all__ = ["EXTRACTOR_FOR_DATASET", "SAMPLE_METRICS", "nearest_neighbour_figure", "parse_metrics",
           "real_images", "sample_quality", "to_extractor_range"]

