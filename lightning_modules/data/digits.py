"""scikit-learn's handwritten digits: 1,797 real 8x8 images, 10 classes; ships with scikit-learn."""

from __future__ import annotations

import numpy as np

from lightning_modules.data.base import DatasetSplit

DIGITS_MAX_INTENSITY = 16.0  # load_digits pixels are counts 0..16
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits_split(split: str) -> DatasetSplit:
    """`all` (the 1,797 images, the usual clustering benchmark), or a fixed stratified `train`/`test` split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / DIGITS_MAX_INTENSITY).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    if split != "all":
        train_idx, test_idx = train_test_split(
            np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
        )
        index = {"train": train_idx, "test": test_idx}[split]
        images, labels = images[index], labels[index]
    return DatasetSplit(images=images, labels=labels, label_names=[str(d) for d in range(10)])
