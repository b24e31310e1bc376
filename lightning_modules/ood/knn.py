"""`knn1`, `knn50`, `knn50-mean`: cosine similarity to the k-th nearest ID training embedding (or the mean
over the k nearest). Unsupervised: no labels involved."""

from __future__ import annotations

import numpy as np

from lightning_modules.search.neighbours import build_index, search
from lightning_modules.ood.base import OODScorer


class KNNScorer(OODScorer):
    """`index`, `nlist`, `nprobe`: as the kNN graph's (`lightning_modules.search.neighbours`); exact by default."""

    def __init__(self, k: int = 1, reduce: str = "kth", query_batch: int = 65536, use_gpu: bool | str = "auto",
                 index: str = "exact", nlist: int | None = None, nprobe: int | None = None):
        if reduce not in ("kth", "mean"):
            raise ValueError(f"knn scorer: reduce = '{reduce}'; allowed: kth, mean")
        self.k, self.reduce, self.query_batch, self.use_gpu = k, reduce, query_batch, use_gpu
        self.index, self.nlist, self.nprobe = index, nlist, nprobe

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "KNNScorer":
        if not 1 <= self.k <= len(embeddings):
            raise ValueError(f"knn scorer: k = {self.k} needs at least {self.k} ID training samples, "
                             f"got {len(embeddings)}")
        self.index_ = build_index(embeddings, self.index, self.nlist, self.nprobe, self.use_gpu)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        similarities, _ = search(self.index_, x, self.k, self.query_batch)
        scores = similarities[:, -1] if self.reduce == "kth" else similarities.mean(axis=1)
        return scores.astype(np.float64)
