"""The embedding artifact: `{split}.npy` (float16/32, memory-mappable), `{split}.labels.npy` (int64,
-1 = unknown) and `{split}.meta.json` in `results/{dataset}/{backbone}/embeddings/`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from lightning_modules.data.builders import class_index
from lightning_modules.core.io import load_npy, nonfinite_rows, read_json, release_rows, save_npy, write_json


def artifact_paths(embeddings_dir: str | Path, split: str) -> dict[str, Path]:
    root = Path(embeddings_dir)
    return {
        "embeddings": root / f"{split}.npy",
        "labels": root / f"{split}.labels.npy",
        "coarse_labels": root / f"{split}.coarse_labels.npy",
        "meta": root / f"{split}.meta.json",
    }


def check_embeddings(embeddings: np.ndarray, labels: np.ndarray, source: str = "embeddings") -> None:
    """Raise ValueError with one line if the pair cannot be used downstream."""
    if embeddings.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D (samples, dims) array, got shape {embeddings.shape}")
    if len(embeddings) != len(labels):
        raise ValueError(f"{source}: {len(embeddings)} embeddings but {len(labels)} labels")
    bad = nonfinite_rows(embeddings)
    if bad:
        raise ValueError(f"{source}: {bad} rows contain NaN or inf; re-extract them or drop those samples")


def array_fingerprint(array: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and values: what downstream artifacts record to prove their source."""
    digest = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    rows_per_chunk = max(1, (64 << 20) // max(1, array[:1].nbytes))  # bounded memory for memory-mapped arrays
    for start in range(0, len(array), rows_per_chunk):
        digest.update(np.ascontiguousarray(array[start:start + rows_per_chunk]).tobytes())
        release_rows(array, slice(start, start + rows_per_chunk))
    return digest.hexdigest()


def write_embeddings(embeddings_dir, split: str, embeddings: np.ndarray, labels: np.ndarray, meta: dict,
                     coarse_labels: np.ndarray | None = None) -> None:
    check_embeddings(embeddings, labels)
    paths = artifact_paths(embeddings_dir, split)
    save_npy(paths["embeddings"], embeddings)
    save_npy(paths["labels"], labels.astype(np.int64))
    if coarse_labels is not None:
        save_npy(paths["coarse_labels"], np.asarray(coarse_labels, dtype=np.int64))
    # meta last: its presence says the pair beside it is complete
    write_json(paths["meta"], {**meta, "count": int(len(embeddings)), "dims": int(embeddings.shape[1]),
                               "dtype": str(embeddings.dtype), "embeddings_fingerprint": array_fingerprint(embeddings)})


def read_embeddings(embeddings_dir, split: str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    paths = artifact_paths(embeddings_dir, split)
    embeddings, labels = load_npy(paths["embeddings"], mmap), load_npy(paths["labels"], mmap)
    check_embeddings(embeddings, labels, source=str(paths["embeddings"]))
    return embeddings, labels


def read_coarse_labels(embeddings_dir, split: str) -> np.ndarray | None:
    """Superclass labels, where the dataset has them (evaluation only)."""
    path = artifact_paths(embeddings_dir, split)["coarse_labels"]
    return load_npy(path) if path.exists() else None


def read_meta(embeddings_dir, split: str) -> dict:
    return read_json(artifact_paths(embeddings_dir, split)["meta"])


def class_rows(embeddings_dir, split: str, classes: list | None, key: str) -> np.ndarray:
    """Row indices of the split whose label is one of `classes` (all rows when None)."""
    _, labels = read_embeddings(embeddings_dir, split)
    if not classes:
        return np.arange(len(labels))
    names = read_meta(embeddings_dir, split)["label_names"]
    wanted = [class_index(names, name, key) for name in classes]
    rows = np.flatnonzero(np.isin(labels, wanted))
    if not len(rows):
        raise ValueError(f"{key}: no samples of classes {classes} in {embeddings_dir}/{split}.npy")
    return rows
