"""Benchmark builders: derived datasets declared in config on top of any source ("Scaling Up Deep
Clustering Methods Beyond ImageNet-1K": class imbalance, class granularity, class subsets).

Dataset entry keys: `classes` (keep these classes, by name or index), `coarse_groups` ({coarse name:
[classes]}: define coarse labels), `granularity` (fine | coarse: which labels evaluate the clustering),
`imbalance` ({ratio, seed}: a long-tailed subsample)."""

from __future__ import annotations

import numpy as np

from lightning_modules.data.base import DatasetSplit

BUILDER_KEYS = ("classes", "coarse_groups", "granularity", "imbalance")


def _class_index(data: DatasetSplit, name, key: str) -> int:
    if isinstance(name, int) and 0 <= name < len(data.label_names):
        return name
    if str(name) in data.label_names:
        return data.label_names.index(str(name))
    raise ValueError(f"{key}: no class '{name}'; classes are {', '.join(data.label_names[:20])}"
                     f"{', …' if len(data.label_names) > 20 else ''}")


def subset(data: DatasetSplit, index: np.ndarray) -> DatasetSplit:
    images = data.images[index] if isinstance(data.images, np.ndarray) else data.images.subset(index)
    return DatasetSplit(images, data.labels[index], data.label_names,
                        None if data.coarse_labels is None else data.coarse_labels[index], data.coarse_names)


def keep_classes(data: DatasetSplit, classes: list) -> DatasetSplit:
    """Only `classes`, relabelled 0..len(classes)-1 in the order given."""
    wanted = [_class_index(data, c, "classes") for c in classes]
    index = np.flatnonzero(np.isin(data.labels, wanted))
    kept = subset(data, index)
    remap = np.full(len(data.label_names), -1)
    remap[wanted] = np.arange(len(wanted))
    kept.labels = remap[kept.labels]
    kept.label_names = [data.label_names[c] for c in wanted]
    return kept


def with_coarse_groups(data: DatasetSplit, groups: dict[str, list]) -> DatasetSplit:
    coarse_of = np.full(len(data.label_names), -1)
    for group, (name, members) in enumerate(groups.items()):
        for member in members:
            coarse_of[_class_index(data, member, f"coarse_groups.{name}")] = group
    ungrouped = [data.label_names[c] for c in np.unique(data.labels[data.labels >= 0]) if coarse_of[c] < 0]
    if ungrouped:
        raise ValueError(f"coarse_groups: class '{ungrouped[0]}' is in no group; every class needs one")
    return DatasetSplit(data.images, data.labels, data.label_names, coarse_of[data.labels], list(groups))


def long_tailed(data: DatasetSplit, ratio: float, seed: int = 0) -> DatasetSplit:
    """Class c (in index order) keeps floor(n * ratio^(-c / (C - 1))) random samples, n the smallest class
    count: the largest over the smallest kept class is `ratio` (an exponential profile)."""
    classes, counts = np.unique(data.labels[data.labels >= 0], return_counts=True)
    keep = np.floor(counts.min() * ratio ** (-np.arange(len(classes)) / max(1, len(classes) - 1))).astype(int)
    rng = np.random.default_rng(seed)
    index = np.concatenate([np.sort(rng.choice(np.flatnonzero(data.labels == c), max(1, n), replace=False))
                            for c, n in zip(classes, keep)])
    return subset(data, np.sort(index))


def coarse_granularity(data: DatasetSplit) -> DatasetSplit:
    """Evaluate against the coarse labels: they become the labels (a coarse benchmark has one level)."""
    if data.coarse_labels is None:
        raise ValueError("granularity: coarse needs coarse labels (cifar100, an imagefolder hierarchy, or "
                         "coarse_groups in config)")
    return DatasetSplit(data.images, data.coarse_labels, data.coarse_names or [], None, None)


def build_benchmark(data: DatasetSplit, classes=None, coarse_groups=None, granularity: str = "fine",
                    imbalance: dict | None = None) -> DatasetSplit:
    if classes:
        data = keep_classes(data, classes)
    if coarse_groups:
        data = with_coarse_groups(data, coarse_groups)
    if imbalance:
        data = long_tailed(data, float(imbalance["ratio"]), int(imbalance.get("seed", 0)))
    if granularity == "coarse":
        data = coarse_granularity(data)
    elif granularity != "fine":
        raise ValueError(f"granularity = '{granularity}'; allowed: fine, coarse")
    return data
