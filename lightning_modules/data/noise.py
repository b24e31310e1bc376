"""`noise`: unlabelled images of uniform or Gaussian noise, the far-OOD sanity check of the OOD literature
(ODIN's "Uniform" and "Gaussian" sets). Every split draws its own images."""

from __future__ import annotations

import numpy as np

from lightning_modules.data.base import DatasetSplit

SPLIT_OFFSETS = {"all": 0, "train": 1, "test": 2}


def load_noise_split(split: str, n: int = 360, shape: list[int] | tuple[int, ...] = (1, 8, 8), kind: str = "uniform",
                     seed: int = 0) -> DatasetSplit:
    """`n` images of `shape` (C, H, W) in [0, 1]: uniform, or N(0.5, 0.25^2) clipped (`kind: gaussian`)."""
    if kind not in ("uniform", "gaussian"):
        raise ValueError(f"noise: kind = '{kind}'; allowed: uniform, gaussian")
    if len(shape) != 3:
        raise ValueError(f"noise: shape = {list(shape)} must be [channels, height, width]")
    rng = np.random.default_rng([seed, SPLIT_OFFSETS[split]])
    size = (n, *map(int, shape))
    images = rng.random(size) if kind == "uniform" else np.clip(rng.normal(0.5, 0.25, size), 0, 1)
    return DatasetSplit(images=images.astype(np.float32), labels=np.full(n, -1), label_names=[])
