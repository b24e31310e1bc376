"""Numba's compilations made once per installation (`make install` runs this), so that no workflow job compiles:
what the label-free selection's UMAP silhouette and the reports' t-SNE maps compile (umap-learn's functions, and
pynndescent's, which openTSNE's neighbour search uses from 1,000 rows on), and k-means' per-cluster sums, on a small
random sample with the same settings and dtypes. ~25 s on 2 cores; `core.compiled` says why they are kept on disk.

    python -m lightning_modules.workflow.warm
"""

from __future__ import annotations

import numpy as np

from lightning_modules.clustering.criteria import UmapSilhouette
from lightning_modules.clustering.kmeans import LloydKMeans
from lightning_modules.embeddings.maps import embedding_map


def warm() -> None:
    rows = np.random.default_rng(0).standard_normal((1200, 16)).astype(np.float32)
    sample = rows[:UmapSilhouette.ROWS]
    UmapSilhouette.project(sample / np.linalg.norm(sample, axis=1, keepdims=True))
    embedding_map(rows, "opentsne")
    LloydKMeans(2, max_iter=1).fit(rows)


if __name__ == "__main__":
    warm()
