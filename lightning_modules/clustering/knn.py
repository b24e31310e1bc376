"""The kNN graph: exact cosine nearest neighbours of every embedding (self excluded), with faiss.

Artifact: `{dataset}/{backbone}/knn/{split}.k{n}.npy` (int32 indices, nearest first),
`{split}.k{n}.dist.npy` (float16 cosine similarities) and `{split}.k{n}.meta.json` (the fingerprint of the
embeddings it was built from, checked by every reader)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_modules.embeddings.artifact import array_fingerprint, read_embeddings, read_meta
from lightning_modules.io import load_npy, read_json, save_npy, write_json


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + eps)  # eps inside the division: zero rows stay zero


def cosine_index(normalised: np.ndarray, use_gpu: bool | str = "auto"):
    """An exact inner-product faiss index over L2-normalised rows (on every GPU when there are any)."""
    import faiss

    index = faiss.IndexFlatIP(normalised.shape[1])
    if (faiss.get_num_gpus() > 0) if use_gpu == "auto" else bool(use_gpu):
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(normalised, dtype=np.float32))
    return index


def knn_graph(embeddings: np.ndarray, k: int = 50, query_batch: int = 65536, use_gpu: bool | str = "auto",
              progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) embeddings -> (N, k) int32 neighbour indices and (N, k) float32 cosine similarities.

    Queries run in batches of `query_batch` rows so memory stays bounded for millions of points. A point
    is never its own neighbour, even when duplicates tie with it.
    """
    from tqdm.auto import tqdm

    n = len(embeddings)
    if not 1 <= k < n:
        raise ValueError(f"knn.k = {k} must be between 1 and the number of samples - 1 ({n - 1})")
    x = l2_normalise(embeddings)
    index = cosine_index(x, use_gpu)
    indices = np.empty((n, k), dtype=np.int32)
    similarities = np.empty((n, k), dtype=np.float32)
    for start in tqdm(range(0, n, query_batch), desc="knn", disable=not progress):
        stop = min(start + query_batch, n)
        sims, found = index.search(x[start:stop], k + 1)
        is_self = found == np.arange(start, stop)[:, None]
        is_self[~is_self.any(axis=1), -1] = True  # self lost among ties: drop the farthest instead
        order = np.argsort(is_self, axis=1, kind="stable")[:, :k]  # self (True) moves to the end
        indices[start:stop] = np.take_along_axis(found, order, axis=1)
        similarities[start:stop] = np.take_along_axis(sims, order, axis=1)
    return indices, similarities


def knn_paths(knn_dir: str | Path, split: str, k: int) -> dict[str, Path]:
    root = Path(knn_dir)
    return {name: root / f"{split}.k{k}{suffix}" for name, suffix in
            (("indices", ".npy"), ("similarities", ".dist.npy"), ("meta", ".meta.json"))}


def build_knn_graph(embeddings_dir, split: str, k: int, knn_dir, query_batch: int = 65536) -> dict:
    embeddings, _ = read_embeddings(embeddings_dir, split)
    indices, similarities = knn_graph(np.asarray(embeddings), k, query_batch, progress=True)
    paths = knn_paths(knn_dir, split, k)
    save_npy(paths["indices"], indices)
    save_npy(paths["similarities"], similarities.astype(np.float16))
    meta = {"k": k, "split": split, "count": len(indices), "metric": "cosine",
            "embeddings_fingerprint": read_meta(embeddings_dir, split).get("embeddings_fingerprint")}
    write_json(paths["meta"], meta)
    return meta


def read_knn_graph(knn_dir, split: str, k: int, embeddings: np.ndarray | None = None) -> np.ndarray:
    """The (N, k) neighbour indices; with `embeddings`, refuse a graph built from other embeddings."""
    paths = knn_paths(knn_dir, split, k)
    indices = load_npy(paths["indices"])
    if embeddings is not None:
        recorded = read_json(paths["meta"]).get("embeddings_fingerprint")
        if recorded != array_fingerprint(np.asarray(embeddings)):
            raise ValueError(f"{paths['indices']} was built from different embeddings than the ones given "
                             f"(fingerprint mismatch); rebuild it (delete it and rerun the workflow)")
        if len(indices) != len(embeddings):
            raise ValueError(f"{paths['indices']} has {len(indices)} rows for {len(embeddings)} embeddings")
    return indices
