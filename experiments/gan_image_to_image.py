"""Comparison grids of a trained Pix2Pix, CycleGAN or SRGAN run (gm_jax.gan.image_to_image).

Rows of eval images: pix2pix ``input | output | target``; srgan ``low-res (nearest) | bicubic | SRGAN |
high-res``; cyclegan ``A | G(A) | F(G(A))`` then ``B | F(B) | G(F(B))``.

    python experiments/gan_image_to_image.py --workdir runs/pix2pix_edges [--out docs/figures/gan_pix2pix.png]
    python experiments/gan_image_to_image.py --workdir runs/gan_srgan --sr_fid 1000   # + FID/PSNR vs bicubic

``--sr_fid N`` (SRGAN runs): FID (shipped Fashion-MNIST classifier features, Heusel et al. 2017) and PSNR of
the SRGAN outputs and of bicubic upsampling of the first N test images, both against those N high-resolution
images; written to WORKDIR/sr_fid.json.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.rng import purpose_key, seed_key
from gm_jax.gan import tasks
from gm_jax.train.images import save_image_grid
from gm_jax.train.workdir import load_workdir


def _to_image_range(x: jax.Array) -> np.ndarray:
    """Conditions with extra channels (the inpainting mask) are shown by their first channel."""
    return np.asarray(x[..., :1])


def comparison(workdir: str, num: int, seed: int) -> tuple[np.ndarray, int]:
    run, state = load_workdir(workdir)
    m, family = run.config.model, run.family
    key = purpose_key(seed_key(seed), "sample")
    params = state.sampling_params()
    if m.task == "cyclegan":
        rows = []
        for direction, back in (("a_to_b", "b_to_a"), ("b_to_a", "a_to_b")):
            fake, _ = family.sample(params, key, num, direction=direction)
            cycled, _ = family.sample(params, key, num, source=np.asarray(fake), direction=back)
            source = _source_images(run, num, direction)
            rows += [source, np.asarray(fake), np.asarray(cycled)]
        return np.concatenate(rows), num
    x = _source_images(run, num, "a_to_b")
    out, _ = family.sample(params, key, num, source=x)
    # the family builds the condition from the same key (inpainting holes), so this is its input
    if m.task == "srgan":
        low = tasks.downsample(jnp.asarray(x), int(m.scale))
        nearest = jax.image.resize(low, x.shape, "nearest")
        cols = [np.asarray(nearest), np.asarray(tasks.bicubic_upsample(low, int(m.scale))), np.asarray(out), x]
    else:
        if m.condition == "edges":
            cond = tasks.sobel_edges(jnp.asarray(x), float(m.edge_threshold))
        else:
            mask = tasks.random_box_mask(key, num, x.shape[1], x.shape[2], float(m.hole_min), float(m.hole_max))
            cond = tasks.masked_condition(jnp.asarray(x), mask)
        cols = [_to_image_range(cond), np.asarray(out), x]
    return np.concatenate(cols), num


def _source_images(run, num: int, direction: str) -> np.ndarray:
    m = run.config.model
    classes = None
    if m.task == "cyclegan":
        classes = tuple(m.domain_a if direction == "a_to_b" else m.domain_b)
    chunks, have = [], 0
    for b in run.pipeline.eval_batches(500):
        x = b["x"] if classes is None else b["x"][np.isin(b["label"], classes)]
        chunks.append(x)
        have += len(x)
        if have >= num:
            break
    return np.concatenate(chunks)[:num]


def sr_fid(workdir: str, num: int, seed: int) -> dict:
    """FID and PSNR of SRGAN and of bicubic upsampling against the same ``num`` high-resolution test images."""
    from gm_jax.metrics import fid, load_feature_extractor

    run, state = load_workdir(workdir)
    m = run.config.model
    if m.task != "srgan":
        raise SystemExit(f"--sr_fid needs an SRGAN run, {workdir} has model.task={m.task!r}")
    x = _source_images(run, num, "a_to_b")
    extractor = load_feature_extractor("fashion_mnist_cnn")
    key = purpose_key(seed_key(seed), "sample")
    params = state.sampling_params()
    outs = [np.asarray(run.family.sample(params, key, len(chunk), source=chunk)[0])
            for chunk in np.array_split(x, max(1, num // 250))]
    sr = np.concatenate(outs)
    bicubic = np.clip(np.asarray(tasks.bicubic_upsample(tasks.downsample(jnp.asarray(x), int(m.scale)),
                                                        int(m.scale))), -1.0, 1.0)
    f_real = extractor.features(x)
    result = {"num": num, "step": int(state.step)}
    for name, y in (("srgan", sr), ("bicubic", bicubic)):
        result[name] = {"fid": fid(f_real, extractor.features(y)),
                        "psnr": float(np.mean(np.asarray(tasks.psnr(jnp.asarray(y), jnp.asarray(x)))))}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num", type=int, default=10, help="images per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="PNG path (default WORKDIR/comparison.png)")
    parser.add_argument("--sr_fid", type=int, default=0, help="SRGAN: FID/PSNR vs bicubic on this many images")
    args = parser.parse_args()
    if args.sr_fid:
        import json

        result = sr_fid(args.workdir, args.sr_fid, args.seed)
        with open(os.path.join(args.workdir, "sr_fid.json"), "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(result))
    tiles, ncols = comparison(args.workdir, args.num, args.seed)
    path = args.out or os.path.join(args.workdir, "comparison.png")
    save_image_grid(tiles, path, (-1.0, 1.0), ncols=ncols)
    print(path)


if __name__ == "__main__":
    main()
