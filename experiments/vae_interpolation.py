"""Latent walks of a trained VAE (the seeds' "smiling to frowning" walk): encode pairs of test images, walk
between their posterior means along the spherical (or linear) path, decode each point into a grid row.

    python experiments/vae_interpolation.py --workdir runs/vae --pairs 8 --steps 10
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from gm_jax.autoencoders.family import build_model
from gm_jax.autoencoders.sample import decode_latents, interpolation_grid
from gm_jax.train.images import save_image_grid
from gm_jax.train.workdir import load_workdir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--method", default="spherical", choices=["spherical", "linear"])
    args = p.parse_args()

    run, state = load_workdir(args.workdir)
    model = build_model(run.config.model, run.pipeline.spec)
    params = state.sampling_params()
    x = next(iter(run.pipeline.eval_batches(2 * args.pairs)))["x"]
    mean, _ = model.apply({"params": params}, x, method=model.encode)
    z = interpolation_grid(mean[:args.pairs], mean[args.pairs:2 * args.pairs], args.steps, args.method)
    images = np.asarray(jax.jit(lambda p, z: decode_latents(model, p, z))(params, z))
    path = os.path.join(args.workdir, f"interpolation_{args.method}.png")
    save_image_grid(images.reshape((-1,) + images.shape[2:]), path, run.pipeline.spec.value_range,
                    ncols=args.steps)
    print(path)


if __name__ == "__main__":
    main()
