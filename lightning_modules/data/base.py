from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class DatasetSplit:
    """One split of a dataset.

    images: (N, C, H, W) float32 in [0, 1] -- an array, or a lazy sequence whose items are (C, H, W)
    arrays and which has a `fingerprint()` (image folders) -- or (N, D) feature vectors (the `embeddings`
    and `synthetic` sources; the `pixels` backbone passes them through).
    labels: int64 (N,), -1 where unknown; label_names: one per class index; coarse_labels: int64 (N,)
    superclass per sample, where the dataset has them (coarse_names likewise).
    """

    images: Any
    labels: np.ndarray
    label_names: list[str]
    coarse_labels: np.ndarray | None = None
    coarse_names: list[str] | None = None
    derivation: dict | None = None  # what the benchmark builders did (recorded in the embedding meta)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if isinstance(self.images, np.ndarray) and self.images.ndim not in (2, 4):
            raise ValueError(f"images must be (N, C, H, W) or features (N, D), got shape {self.images.shape}")
        if self.coarse_labels is not None and len(self.coarse_labels) != len(self.labels):
            raise ValueError(f"{len(self.coarse_labels)} coarse labels for {len(self.labels)} samples")

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """sha256 of the data and labels: a changed dataset gets a new fingerprint."""
        digest = hashlib.sha256()
        if isinstance(self.images, np.ndarray):
            digest.update(str(self.images.shape).encode())
            digest.update(np.ascontiguousarray(self.images, dtype=np.float32).tobytes())
        else:
            digest.update(self.images.fingerprint().encode())
        digest.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return digest.hexdigest()


def show_image(axis, image) -> None:
    """Draw one (C, H, W) image of a DatasetSplit on a matplotlib axis: one channel as ink on white (the
    digits), three as RGB, clipped to [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    if image.shape[0] == 1:
        axis.imshow(image[0], cmap="gray_r", vmin=0, vmax=1)
    else:
        axis.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
