"""Make the embedded default dataset ``fashion_mnist_small``: a class-balanced subset of Fashion-MNIST
(Xiao et al. 2017) with 500 training and 100 test images per class, chosen with a fixed seed, written as
gzipped IDX files into gm_jax/data/embedded/ together with Fashion-MNIST's MIT license.

Usage:  python experiments/make_embedded_subset.py [--source /usr/share/datasets/fashion-mnist] [--seed 0]
The source is Debian's ``dataset-fashion-mnist`` package (or any folder with the four IDX files).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from gm_jax.data.builders.image_builders import DEBIAN_FASHION_MNIST_DIR, EMBEDDED_DIR, IDX_FILES, read_idx_split
from gm_jax.data.idx import write_idx

PER_CLASS = {"train": 500, "test": 100}
COPYRIGHT_FILE = "/usr/share/doc/dataset-fashion-mnist/copyright"


def balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of each class drawn without replacement, returned in increasing order."""
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def license_text() -> str:
    """Fashion-MNIST's MIT (Expat) license with its copyright line, from Debian's copyright file."""
    with open(COPYRIGHT_FILE) as f:
        lines = f.read().splitlines()
    files_star = lines.index("Files: *")
    copyright_line = next(line for line in lines[files_star:] if line.startswith("Copyright:"))
    holder = copyright_line.split(":", 1)[1].strip()
    first_license = lines.index("License: Expat", files_star)
    body = [line[1:] for line in lines[lines.index("License: Expat", first_license + 1) + 1:]
            if line.startswith(" ")]
    body = ["" if line.strip() == "." else line.rstrip() for line in body]
    return ("Fashion-MNIST, a subset of which is stored in this folder, is distributed under the MIT License.\n\n"
            f"The MIT License (MIT)\n\nCopyright (c) {holder}\n\n"
            + "\n".join(body) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=DEBIAN_FASHION_MNIST_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=EMBEDDED_DIR)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for split, (image_stem, label_stem) in IDX_FILES.items():
        images, labels = read_idx_split(args.source, split)
        keep = balanced_indices(labels, PER_CLASS[split], rng)
        write_idx(os.path.join(args.out, image_stem + ".gz"), images[keep, :, :, 0])
        write_idx(os.path.join(args.out, label_stem + ".gz"), labels[keep].astype(np.uint8))
        print(f"{split}: {keep.size} images, {np.bincount(labels[keep]).tolist()} per class")
    with open(os.path.join(args.out, "LICENSE"), "w") as f:
        f.write(license_text())
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("# fashion_mnist_small\n\n"
                f"A class-balanced subset of Fashion-MNIST (Xiao et al. 2017): {PER_CLASS['train']} training and "
                f"{PER_CLASS['test']} test images per class (5000 / 1000), chosen with "
                f"`numpy.random.default_rng({args.seed})` from Debian's `dataset-fashion-mnist` by "
                "`python experiments/make_embedded_subset.py`, kept in the original order, stored as gzipped IDX "
                "files. License: MIT, see LICENSE (Copyright (c) 2017 Zalando SE).\n")


if __name__ == "__main__":
    main()
