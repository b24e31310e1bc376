"""Sources read from user files: `embeddings` (bring your own .npy), `cifar10` / `cifar100` (the python
version's on-disk format) and `imagefolder` (a class-per-folder tree)."""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np

from lightning_modules.data.base import DatasetSplit

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _existing(path, key: str, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{key}: {path} does not exist; {what}")
    return path


def load_embeddings_split(split: str, path: str, labels: str | None = None, label_names: list[str] | None = None,
                          coarse_labels: str | None = None) -> DatasetSplit:
    """Precomputed features: `path` (and `labels`, `coarse_labels`) are .npy files, `{split}` in a path is
    replaced by the split name. Embedded with the `pixels` backbone, they pass through unchanged. Each file is
    checked against its contract (lightning_modules.core.contracts) as it is read."""
    from lightning_modules.core.contracts import check_class_names, check_embeddings_array, check_labels_array, read_npy

    files = {key: template.format(split=split) for key, template in
             (("path", path), ("labels", labels), ("coarse_labels", coarse_labels)) if template}
    features = read_npy(files["path"], "path")
    check_embeddings_array(features, files["path"], "path")
    label_array = np.full(len(features), -1, dtype=np.int64)
    if labels:
        label_array = read_npy(files["labels"], "labels")
        check_labels_array(label_array, files["labels"], "labels", len(features))
    coarse = None
    if coarse_labels:
        coarse = read_npy(files["coarse_labels"], "coarse_labels")
        check_labels_array(coarse, files["coarse_labels"], "coarse_labels", len(features))
    n_classes = int(label_array.max()) + 1 if len(label_array) else 0
    names = check_class_names(label_names, n_classes, "label_names") if label_names is not None else \
        [str(c) for c in range(n_classes)]
    return DatasetSplit(np.asarray(features, dtype=np.float32), np.asarray(label_array), names,
                        coarse_labels=None if coarse is None else np.asarray(coarse))


class _ArraysOnly(pickle.Unpickler):
    """CIFAR's files are pickles; this unpickler rebuilds numpy arrays and plain containers and refuses
    every other global, so a tampered file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in a dataset file")
        return super().find_class(module, name)


def _read_cifar_file(path: Path) -> dict:
    with open(path, "rb") as handle:
        raw = _ArraysOnly(io.BytesIO(handle.read()), encoding="bytes").load()
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in raw.items()}


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def load_cifar_split(split: str, root: str, variant: str = "cifar10") -> DatasetSplit:
    """`train` (50,000) or `test` (10,000) from `root/cifar-10-batches-py` or `root/cifar-100-python`."""
    if variant == "cifar10":
        folder = _existing(Path(root) / "cifar-10-batches-py", "root", "download CIFAR-10 (python version) and extract it under root")
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta = _read_cifar_file(folder / "batches.meta")
        label_key, names, coarse_names = "labels", _names(meta["label_names"]), None
    else:
        folder = _existing(Path(root) / "cifar-100-python", "root", "download CIFAR-100 (python version) and extract it under root")
        files = [split]
        meta = _read_cifar_file(folder / "meta")
        label_key, names = "fine_labels", _names(meta["fine_label_names"])
        coarse_names = _names(meta["coarse_label_names"])
    batches = [_read_cifar_file(_existing(folder / name, "root", "the CIFAR folder is incomplete")) for name in files]
    pixels = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    images = pixels.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    labels = np.concatenate([np.asarray(b[label_key]) for b in batches])
    coarse = np.concatenate([np.asarray(b["coarse_labels"]) for b in batches]) if coarse_names else None
    return DatasetSplit(images, labels, names, coarse, coarse_names)


def load_cifar100_split(split: str, root: str) -> DatasetSplit:
    return load_cifar_split(split, root, "cifar100")


class ImageFiles:
    """Images read lazily from files, as float32 (C, H, W) in [0, 1] (RGB, or 1 channel for grayscale)."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert("L" if image.mode in ("1", "L", "I;16") else "RGB")
                array = np.asarray(image, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"image file {path} cannot be read ({error}); remove or replace it") from None
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def subset(self, index) -> "ImageFiles":
        return ImageFiles([self.paths[i] for i in index])

    def fingerprint(self) -> str:
        """Names, sizes and modification times: cheap for a million files, and changes when files do."""
        digest = hashlib.sha256()
        for path in self.paths:
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def load_imagefolder_split(split: str, root: str, hierarchy: str | None = None) -> DatasetSplit:
    """`root/<split>/<class>/<image>` (or `root/<class>/<image>` for split `all`); class indices follow
    sorted folder names. `hierarchy`: a JSON file mapping each class folder to its coarse class."""
    base = _existing(root, "root", "point root at a folder of class folders")
    folder = base if split == "all" else _existing(base / split, "split", f"expected {base}/{split}/<class>/<image>")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"root: {folder} has no class folders; expected {folder}/<class>/<image>")
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"root: class folder {folder / name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        paths += files
        labels += [index] * len(files)
    coarse, coarse_names = None, None
    if hierarchy:
        from lightning_modules.core.contracts import read_hierarchy

        mapping = read_hierarchy(hierarchy, classes)
        coarse_names = sorted(set(mapping[c] for c in classes))
        coarse = np.array([coarse_names.index(mapping[classes[label]]) for label in labels])
    return DatasetSplit(ImageFiles(paths), np.array(labels), classes, coarse, coarse_names)
