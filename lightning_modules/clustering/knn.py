"""The kNN graph artifact: cosine nearest neighbours of every embedding (self excluded), exact or IVF
(`lightning_modules.search.neighbours`).

Artifact: `{dataset}/{backbone}/knn/{split}.k{n}.npy` (int32 indices, nearest first),
`{split}.k{n}.dist.npy` (float16 cosine similarities) and `{split}.k{n}.meta.json` (the index, its recall@k
against exact search on a sample of rows, and the fingerprint of the embeddings it was built from, checked by
every reader)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lightning_modules.embeddings.artifact import array_fingerprint, read_embeddings, read_meta
from lightning_modules.core.io import load_npy, read_json, save_npy, write_json
from lightning_modules.search.neighbours import graph_recall, ivf_settings, knn_graph

log = logging.getLogger(__name__)
RECALL_WARNING = 0.9


def knn_paths(knn_dir: str | Path, split: str, k: int) -> dict[str, Path]:
    root = Path(knn_dir)
    return {name: root / f"{split}.k{k}{suffix}" for name, suffix in
            (("indices", ".npy"), ("similarities", ".dist.npy"), ("meta", ".meta.json"))}


def build_knn_graph(embeddings_dir, split: str, k: int, knn_dir, query_batch: int = 65536, index: str = "exact",
                    nlist: int | None = None, nprobe: int | None = None, recall_queries: int = 2000) -> dict:
    """Build and write the graph; its meta records the index and, for IVF, its measured recall@k against exact
    search on `recall_queries` random rows (one warning line below 0.9)."""
    embeddings, _ = read_embeddings(embeddings_dir, split)
    if index == "ivf":
        nlist, nprobe = ivf_settings(len(embeddings), nlist, nprobe)
    indices, similarities = knn_graph(embeddings, k, query_batch, progress=None, index=index, nlist=nlist,
                                      nprobe=nprobe)
    meta = {"k": k, "split": split, "count": len(indices), "metric": "cosine", "index": index,
            "embeddings_fingerprint": read_meta(embeddings_dir, split).get("embeddings_fingerprint")}
    if index == "ivf":
        recall = graph_recall(embeddings, indices, recall_queries)
        meta.update(nlist=nlist, nprobe=nprobe, recall_at_k=recall, recall_queries=min(recall_queries, len(indices)))
        if recall < RECALL_WARNING:
            log.warning("kNN graph recall@%d = %.3f against exact search (< %.1f): raise knn.nprobe (now %d of "
                        "%d cells) or use knn.index: exact", k, recall, RECALL_WARNING, nprobe, nlist)
    paths = knn_paths(knn_dir, split, k)
    save_npy(paths["indices"], indices)
    save_npy(paths["similarities"], similarities.astype(np.float16))
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
