"""Benchmark builders: derived datasets declared in config on top of any source ("Scaling Up Deep
Clustering Methods Beyond ImageNet-1K": class imbalance, class granularity, class subsets).

Dataset entry keys: `classes` (keep these classes, by name or index), `easiest` ({n, reference_split, k}:
keep the n classes easiest to recognise), `coarse_groups` ({coarse name: [classes]}: define coarse labels),
`granularity` (fine | coarse: which labels evaluate the clustering), `imbalance` ({ratio, seed}: a
long-tailed subsample), `shift` ({name, seed} or a name: a shifting transformation of every image, the
negatives of the self-distillation detector). What they did is recorded in the embedding meta (`derivation`)."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np

from lightning_modules.data.base import DatasetSplit

BUILDER_KEYS = ("classes", "easiest", "coarse_groups", "granularity", "imbalance", "shift")


def _quadrants(image: np.ndarray) -> list[np.ndarray]:
    h, w = image.shape[-2] // 2, image.shape[-1] // 2
    return [image[..., :h, :w], image[..., :h, w:], image[..., h:, :w], image[..., h:, w:]]


def permute_quadrants(image: np.ndarray, order) -> np.ndarray:
    """The image's four quadrants (top-left, top-right, bottom-left, bottom-right) placed in `order`
    (odd sizes: the middle row/column stays)."""
    out, parts = image.copy(), _quadrants(image)
    for target, source in zip(_quadrants(out), order):
        target[...] = parts[source]
    return out


# Shifting transformations (low-level statistics kept, semantics changed), as in CSI and the self-distillation
# paper; `rotations` and `permute-patches` draw one of their non-identity variants per image.
_NON_IDENTITY_ORDERS = [order for order in itertools.permutations(range(4)) if order != (0, 1, 2, 3)]
SHIFTS = {
    "rotate90": lambda image, rng: np.rot90(image, 1, axes=(-2, -1)),
    "rotate180": lambda image, rng: np.rot90(image, 2, axes=(-2, -1)),
    "rotate270": lambda image, rng: np.rot90(image, 3, axes=(-2, -1)),
    "rotations": lambda image, rng: np.rot90(image, int(rng.integers(1, 4)), axes=(-2, -1)),
    "flip-vertical": lambda image, rng: image[..., ::-1, :],
    "permute-patches": lambda image, rng: permute_quadrants(
        image, _NON_IDENTITY_ORDERS[int(rng.integers(len(_NON_IDENTITY_ORDERS)))]),
}


class ShiftedImages:
    """A lazy image sequence (image files) with a shifting transformation applied as each image is read; the
    per-image draw depends on (seed, index) only, so any subset or order reads the same images."""

    def __init__(self, images, shift: str, seed: int, index=None):
        self.images, self.shift, self.seed = images, shift, seed
        self.index = np.arange(len(images)) if index is None else np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        source = int(self.index[i])
        rng = np.random.default_rng([self.seed, source])
        return np.ascontiguousarray(SHIFTS[self.shift](self.images[source], rng))

    def subset(self, index) -> "ShiftedImages":
        return ShiftedImages(self.images, self.shift, self.seed, self.index[np.asarray(index)])

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{self.images.fingerprint()}|{self.shift}|{self.seed}|".encode())
        digest.update(self.index.astype(np.int64).tobytes())
        return digest.hexdigest()


def shifted(data: DatasetSplit, shift, seed: int = 0) -> DatasetSplit:
    """Every image shifted by `shift` (one of SHIFTS; {name, seed} also accepted); labels are kept (they name
    the source class, which the shift no longer shows)."""
    if isinstance(shift, dict):
        shift, seed = shift.get("name"), int(shift.get("seed", seed))
    if shift not in SHIFTS:
        raise ValueError(f"shift = '{shift}'; allowed: {', '.join(SHIFTS)}")
    images = data.images
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError("shift transforms images; this dataset holds feature vectors")
        if shift.startswith("rotat") and images.shape[-1] != images.shape[-2]:
            raise ValueError(f"shift: {shift} needs square images, got {images.shape[-2]}x{images.shape[-1]}")
        # each image's draw depends on (seed, its index) only, as in ShiftedImages
        images = np.stack([np.ascontiguousarray(SHIFTS[shift](image, np.random.default_rng([seed, index])))
                           for index, image in enumerate(images)])
    else:
        images = ShiftedImages(images, shift, seed)
    derivation = {**(data.derivation or {}), "shift": {"name": shift, "seed": seed}}
    return DatasetSplit(images, data.labels, data.label_names, data.coarse_labels, data.coarse_names, derivation)


def class_index(label_names: list[str], name, key: str) -> int:
    """A class given by index or by name -> its index; a one-line error naming `key` otherwise."""
    if isinstance(name, int) and 0 <= name < len(label_names):
        return name
    if str(name) in label_names:
        return label_names.index(str(name))
    raise ValueError(f"{key}: no class '{name}'; classes are {', '.join(label_names[:20])}"
                     f"{', …' if len(label_names) > 20 else ''}")


def _class_index(data: DatasetSplit, name, key: str) -> int:
    return class_index(data.label_names, name, key)


def subset(data: DatasetSplit, index: np.ndarray) -> DatasetSplit:
    images = data.images[index] if isinstance(data.images, np.ndarray) else data.images.subset(index)
    return DatasetSplit(images, data.labels[index], data.label_names,
                        None if data.coarse_labels is None else data.coarse_labels[index], data.coarse_names,
                        data.derivation)


def class_knn_purity(reference: DatasetSplit, k: int) -> np.ndarray:
    """Per class: the mean fraction of a sample's k nearest neighbours (cosine, on the flattened pixels or
    features of the reference split) that share its class. Higher = easier to recognise."""
    from lightning_modules.search.neighbours import knn_graph

    x = np.stack([np.asarray(reference.images[i], dtype=np.float32).ravel() for i in range(len(reference))])
    neighbours, _ = knn_graph(x, k)
    same = (reference.labels[neighbours] == reference.labels[:, None]).mean(1)
    return np.array([same[reference.labels == c].mean() if (reference.labels == c).any() else np.nan
                     for c in range(len(reference.label_names))])


def easiest_classes(reference: DatasetSplit, n: int, k: int) -> list[int]:
    """The n classes of highest kNN purity on the reference split (ties: lower class index first)."""
    purity = class_knn_purity(reference, k)
    order = sorted(range(len(purity)), key=lambda c: (-np.nan_to_num(purity[c], nan=-1), c))
    return order[:n]


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
    return DatasetSplit(data.images, data.labels, data.label_names, coarse_of[data.labels], list(groups),
                        data.derivation)


def long_tailed(data: DatasetSplit, ratio: float, seed: int) -> DatasetSplit:
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
    return DatasetSplit(data.images, data.coarse_labels, data.coarse_names or [], None, None, data.derivation)


def build_benchmark(data: DatasetSplit, classes=None, coarse_groups=None, granularity: str = "fine",
                    imbalance: dict | None = None, easiest: dict | None = None,
                    reference: DatasetSplit | None = None, shift=None) -> DatasetSplit:
    """`reference`: the labelled split `easiest` ranks classes on (the caller loads it)."""
    if easiest:
        chosen = easiest_classes(reference if reference is not None else data, int(easiest["n"]), int(easiest["k"]))
        data = keep_classes(data, chosen)
        data.derivation = {**(data.derivation or {}), "easiest": {
            **easiest, "rule": "highest mean kNN purity (cosine, flattened pixels/features) on the reference split",
            "classes": data.label_names}}
    if classes:
        data = keep_classes(data, classes)
    if coarse_groups:
        data = with_coarse_groups(data, coarse_groups)
    if imbalance:
        data = long_tailed(data, float(imbalance["ratio"]), int(imbalance["seed"]))
    if granularity == "coarse":
        data = coarse_granularity(data)
    elif granularity != "fine":
        raise ValueError(f"granularity = '{granularity}'; allowed: fine, coarse")
    if shift:
        data = shifted(data, shift)
    return data
