"""Which 2-D map for the reports: UMAP (umap-learn) or t-SNE (openTSNE), by time and trustworthiness (how many of
each point's map neighbours are true neighbours, sklearn.manifold.trustworthiness, 10 neighbours) on the demo's
digits pixels and on 100,000 points of a 384-d Gaussian mixture (trustworthiness there on a 3,000-point sample
of the map: the exact score is quadratic in the points). Both on one core, their default settings.

    .venv/bin/python -m benchmarks.embedding_map [--rows 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import GEMM_NOTE, gemm_gflops, report, step

SAMPLE = 3000


def trust(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    rows = np.random.default_rng(0).choice(len(x), min(SAMPLE, len(x)), replace=False)
    return float(trustworthiness(x[rows], y[rows], n_neighbors=10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    import torch
    from sklearn.datasets import load_digits

    from lightning_modules.data.synthetic import load_synthetic_split
    from lightning_modules.embeddings.maps import MAP_METHODS, embedding_map

    torch.set_num_threads(1)
    rows = [("gemm_peak_gflops", gemm_gflops(), GEMM_NOTE)]
    digits = load_digits().data.astype(np.float32) / 16
    mixture = load_synthetic_split("all", n_classes=100, dims=384, samples_per_class=args.rows // 100).images
    for data_name, x in (("digits", digits), (f"mixture{len(mixture) // 1000}k", mixture)):
        for name in MAP_METHODS:
            step(f"{name} on {data_name} ({len(x)} x {x.shape[1]})")
            if name == "umap" and data_name == "digits":
                embedding_map(x[:200], name)  # numba compiles on the first call: counted apart
            started = time.perf_counter()
            y = embedding_map(x, name)
            seconds = time.perf_counter() - started
            rows += [(f"{name}_{data_name}_seconds", seconds, "one core"),
                     (f"{name}_{data_name}_trustworthiness", trust(x, y), f"10 neighbours, {SAMPLE}-point sample")]
    report("embedding_map", rows)


if __name__ == "__main__":
    main()
