"""One clustering run: embeddings -> assignments.npy + metrics.json (the source of truth for the run)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lightning_modules.clustering import METHODS
from lightning_modules.embeddings.artifact import read_embeddings
from lightning_modules.io import save_npy, write_json
from lightning_modules.metrics.clustering import LABEL_METRICS, clustering_metrics

# What a run measured (mirrored to MLflow as metrics; the run's identity goes to tags and params).
RUN_METRICS = (*LABEL_METRICS, "clusters_used", "inertia", "n_samples", "seconds")


def cluster_embeddings(
    embeddings_dir, split: str, method: str, params: dict, k: int, seed: int, out_dir,
    run_info: dict | None = None, threads: int | None = None,
) -> dict:
    """Fit `method` with K clusters on the split's embeddings; labels are read only to score the result.

    Writes `assignments.npy` (int32) and then `metrics.json` into `out_dir`; returns the metrics record.
    """
    if threads:
        import faiss

        faiss.omp_set_num_threads(threads)
    embeddings, labels = read_embeddings(embeddings_dir, split)
    if not 2 <= k <= len(embeddings):
        raise ValueError(f"clustering.k: K={k} must be between 2 and the number of samples ({len(embeddings)})")
    estimator = METHODS.get(method)(n_clusters=k, seed=seed, **params)
    started = time.perf_counter()
    assignments = np.asarray(estimator.fit_predict(np.asarray(embeddings)), dtype=np.int32)
    seconds = time.perf_counter() - started

    record = {
        **(run_info or {}),
        "method": method,
        "k": int(k),
        "seed": int(seed),
        "params": params,
        "n_samples": int(len(assignments)),
        "seconds": seconds,
        "inertia": getattr(estimator, "inertia_", None),
        **clustering_metrics(labels, assignments, n_clusters=k),
        # Which numbers used the ground truth (evaluation only; nothing was selected with them).
        "label_metrics": list(LABEL_METRICS),
    }
    out_dir = Path(out_dir)
    save_npy(out_dir / "assignments.npy", assignments)
    write_json(out_dir / "metrics.json", record)
    return record
