"""A 2-D map of one embedding artifact, computed once (its own rule) and drawn by the clustering figures.

Methods: t-SNE through openTSNE (the default) and UMAP through umap-learn, both with their default settings.
`benchmarks/embedding_map.py` (docs/demo.md) measured equal trustworthiness (0.99 on the digits, 0.998 at 100k points);
openTSNE needs no JIT compilation, which cost UMAP ~15 s in every fresh job before its compilations were
cached (`core.compiled`), while UMAP was 1.4x faster at 100k points. Above `max_points` rows the map is of a random
sample (its rows are saved beside the coordinates): a map of millions of points is one ink blot anyway.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _opentsne(x: np.ndarray, seed: int, threads: int) -> np.ndarray:
    from openTSNE import TSNE

    return np.asarray(TSNE(n_components=2, random_state=seed, n_jobs=threads).fit(x))


def _umap(x: np.ndarray, seed: int, threads: int) -> np.ndarray:
    import umap

    from lightning_modules.core.compiled import cache_compilations

    cache_compilations("umap", "pynndescent")  # compiled once, not in every job
    return umap.UMAP(n_components=2, random_state=seed, n_jobs=threads).fit_transform(x)


MAP_METHODS = {"opentsne": _opentsne, "umap": _umap}


def embedding_map(x: np.ndarray, method: str = "opentsne", seed: int = 0, threads: int = 1) -> np.ndarray:
    """(N, 2) float32 coordinates of the rows of `x`."""
    if method not in MAP_METHODS:
        raise ValueError(f"map method '{method}': allowed {', '.join(MAP_METHODS)}")
    return MAP_METHODS[method](np.ascontiguousarray(x, dtype=np.float32), seed, threads).astype(np.float32)


def map_rows(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """The rows a map shows: all of them, or a sorted random sample of `max_points`."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def write_map(embeddings_path: str | Path, out_path: str | Path, method: str, max_points: int, seed: int = 0,
              threads: int = 1) -> dict:
    """The map of an embedding file as `out_path` (coordinates) and `<out>.rows.npy` (which rows they are)."""
    from lightning_modules.core.io import load_npy, save_npy

    embeddings = load_npy(embeddings_path)
    rows = map_rows(len(embeddings), max_points, seed)
    coordinates = embedding_map(np.asarray(embeddings[rows]), method, seed, threads)
    out_path = Path(out_path)
    save_npy(out_path.with_name(out_path.name.replace(".npy", ".rows.npy")), rows.astype(np.int64))
    save_npy(out_path, coordinates)
    return {"rows": len(rows), "of": len(embeddings), "method": method}
