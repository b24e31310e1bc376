from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass
class DatasetSplit:
    """One split of a dataset, in memory.

    images: float32 (N, C, H, W) in [0, 1]; labels: int64 (N,), -1 where unknown; label_names: one per
    class index; coarse_labels: int64 (N,) superclass per sample, where the dataset has them.
    """

    images: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    coarse_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {self.images.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """sha256 of pixels and labels: a changed dataset gets a new fingerprint."""
        digest = hashlib.sha256()
        digest.update(str(self.images.shape).encode())
        digest.update(np.ascontiguousarray(self.images, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return digest.hexdigest()
