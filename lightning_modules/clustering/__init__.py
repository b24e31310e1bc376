"""Clustering method registry. Every method is an estimator `Method(n_clusters, seed, **params)` with
`fit_predict(embeddings) -> int assignments`; `needs_knn` says whether it also reads the kNN graph."""

from lightning_modules.registry import Registry

METHODS = Registry("clustering method")
METHODS.register("kmeans", "lightning_modules.clustering.kmeans:FaissKMeans", needs_knn=False)

__all__ = ["METHODS"]
