"""k-means with faiss (GPU when one is visible), scikit-learn-style."""

from __future__ import annotations

import numpy as np


class FaissKMeans:
    """Lloyd's k-means: `n_init` random restarts, the one with the lowest inertia kept.

    max_points_per_centroid: faiss by default trains on a random subsample of 256 points per centroid,
    which silently changes results; None (the default) trains on every point.
    spherical: centroids are L2-normalised after each step (cosine k-means; pass L2-normalised data).
    """

    def __init__(
        self,
        n_clusters: int,
        seed: int = 0,
        n_init: int = 10,
        max_iter: int = 100,
        spherical: bool = False,
        max_points_per_centroid: int | None = None,
        use_gpu: bool | str = "auto",
        verbose: bool = False,
    ):
        self.n_clusters = n_clusters
        self.seed = seed
        self.n_init = n_init
        self.max_iter = max_iter
        self.spherical = spherical
        self.max_points_per_centroid = max_points_per_centroid
        self.use_gpu = use_gpu
        self.verbose = verbose

    def _gpu(self) -> bool:
        import faiss

        available = faiss.get_num_gpus() > 0
        return available if self.use_gpu == "auto" else bool(self.use_gpu) and available

    def fit(self, embeddings: np.ndarray, init_centroids: np.ndarray | None = None) -> "FaissKMeans":
        """`init_centroids` (K, D): start Lloyd from these instead of `n_init` random restarts."""
        import faiss

        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        n, dims = x.shape
        if not 2 <= self.n_clusters <= n:
            raise ValueError(f"k-means needs 2 <= K <= number of samples ({n}), got K={self.n_clusters}")
        kmeans = faiss.Kmeans(
            dims,
            self.n_clusters,
            niter=self.max_iter,
            nredo=self.n_init if init_centroids is None else 1,
            seed=self.seed,
            spherical=self.spherical,
            max_points_per_centroid=self.max_points_per_centroid or n,
            min_points_per_centroid=1,  # few points per centroid is a legitimate overclustering setting
            gpu=self._gpu(),
            verbose=self.verbose,
        )
        kmeans.train(x, init_centroids=None if init_centroids is None else
                     np.ascontiguousarray(init_centroids, dtype=np.float32))
        self.cluster_centers_ = kmeans.centroids.copy()
        self.top2_ = self.nearest_centroids(x, 2)
        self.labels_ = self.top2_[:, 0].copy()
        residuals = x - self.cluster_centers_[self.labels_]
        self.inertia_ = float(np.einsum("ij,ij->", residuals, residuals, dtype=np.float64))
        return self

    def nearest_centroids(self, embeddings: np.ndarray, count: int = 1) -> np.ndarray:
        """(N, count) indices of the nearest centroids, nearest first."""
        import faiss

        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        index = faiss.IndexFlatIP(x.shape[1]) if self.spherical else faiss.IndexFlatL2(x.shape[1])
        index.add(self.cluster_centers_)
        _, nearest = index.search(x, min(count, self.n_clusters))
        return nearest.astype(np.int32)

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        return self.nearest_centroids(embeddings, 1)[:, 0]

    def fit_predict(self, embeddings: np.ndarray) -> np.ndarray:
        return self.fit(embeddings).labels_
