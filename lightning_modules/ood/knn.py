"""`knn1`, `knn50`, `knn50-mean`: cosine similarity to the k-th nearest ID training embedding (or the mean
over the k nearest). Unsupervised: no labels involved."""

from __future__ import annotations

import numpy as np

from lightning_modules.clustering.knn import cosine_index, l2_normalise
from lightning_modules.ood.base import OODScorer


class KNNScorer(OODScorer):
    def __init__(self, k: int = 1, reduce: str = "kth", query_batch: int = 65536, use_gpu: bool | str = "auto"):
        if reduce not in ("kth", "mean"):
            raise ValueError(f"knn scorer: reduce = '{reduce}'; allowed: kth, mean")
        self.k, self.reduce, self.query_batch, self.use_gpu = k, reduce, query_batch, use_gpu

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "KNNScorer":
        if not 1 <= self.k <= len(embeddings):
            raise ValueError(f"knn scorer: k = {self.k} needs at least {self.k} ID training samples, "
                             f"got {len(embeddings)}")
        self.index_ = cosine_index(l2_normalise(embeddings), self.use_gpu)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        queries = l2_normalise(x)
        scores = np.empty(len(queries), dtype=np.float64)
        for start in range(0, len(queries), self.query_batch):
            similarities, _ = self.index_.search(queries[start:start + self.query_batch], self.k)
            scores[start:start + len(similarities)] = (similarities[:, -1] if self.reduce == "kth"
                                                       else similarities.mean(axis=1))
        return scores
