"""The upper cluster bound ("Rethinking cluster-conditioned diffusion models", Adaloglou et al. 2024):
train TEMI with beta = 1 at a deliberately large K and count the clusters it actually uses. A K grid
beyond that count mostly measures empty clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_modules.clustering.heads.estimator import TEMIClustering
from lightning_modules.clustering.knn import read_knn_graph
from lightning_modules.embeddings.artifact import read_embeddings
from lightning_modules.core.io import write_json
from lightning_modules.metrics.clustering import effective_clusters

MAX_BOUND_K = 1000
SAMPLES_PER_CLUSTER = 5


def default_bound_k(n_samples: int) -> int:
    return max(2, min(MAX_BOUND_K, n_samples // SAMPLES_PER_CLUSTER))


def upper_cluster_bound(embeddings_dir, split: str, knn_dir, graph_k: int, out_path, k: int | None = None,
                        seed: int = 0, logger=None, **temi_params) -> dict:
    """Writes `bound.json`: k_trained, clusters_used (the bound), effective_clusters. Uses no labels."""
    embeddings, _ = read_embeddings(embeddings_dir, split)
    neighbours = np.asarray(read_knn_graph(knn_dir, split, graph_k, embeddings))
    k = k or default_bound_k(len(embeddings))
    model = TEMIClustering(k, seed=seed, **{**temi_params, "beta": 1.0}).fit(np.asarray(embeddings), neighbours, logger)
    used = int(len(np.unique(model.labels_)))
    result = {"k_trained": k, "bound": used, "clusters_used": used,
              "effective_clusters": effective_clusters(model.labels_), "seed": seed, "beta": 1.0,
              "selected_head": model.selected_head_, "train_loss": model.train_loss_}
    write_json(out_path, result)
    return result


def run_bound_job(tracking_uri: str, experiment: str, tags: dict, out_path, **bound) -> dict:
    """`upper_cluster_bound` plus its MLflow run (training curves and the bound), named after the folder of
    bound.json like every run; a row of the cluster-bounds table."""
    from lightning_modules.services.tracking import TrackedRun

    tracked = TrackedRun(tracking_uri, experiment, Path(out_path).parent, tags, curves=True)
    result = upper_cluster_bound(out_path=out_path, logger=tracked.logger, **bound)
    params = {key: value for key, value in bound.items() if key not in ("embeddings_dir", "knn_dir")}
    tracked.finish(result, ("bound", "clusters_used", "effective_clusters", "train_loss"),
                   params={**params, "k": result["k_trained"], "beta": 1.0, "selected_head": result["selected_head"]},
                   artifacts=[out_path])
    return result
