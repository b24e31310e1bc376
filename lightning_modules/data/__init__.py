"""Dataset registry. Contract: `load_dataset(source, split, options) -> DatasetSplit`.

Registry info `splits` maps each split to its size where the size is known without loading (used to reject
an impossible K before any job runs)."""

from __future__ import annotations

from lightning_modules.data.base import DatasetSplit
from lightning_modules.registry import Registry

DATASETS = Registry("dataset source")
DATASETS.register(
    "digits",
    "lightning_modules.data.digits:load_digits_split",
    splits={"all": 1797, "train": 1437, "test": 360},
)


def load_dataset(source: str, split: str, options: dict | None = None) -> DatasetSplit:
    splits = DATASETS.entry(source).info.get("splits")
    if splits is not None and split not in splits:
        raise ValueError(f"dataset source '{source}' has no split '{split}'; allowed: {', '.join(splits)}")
    return DATASETS.get(source)(split, **(options or {}))


def known_size(source: str, split: str) -> int | None:
    return DATASETS.entry(source).info.get("splits", {}).get(split)


__all__ = ["DATASETS", "DatasetSplit", "load_dataset", "known_size"]
