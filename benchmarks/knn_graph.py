"""The kNN graph by four methods on the same rows, side by side with their recall: which one `knn.index: ivf`
should run on the CPU.

    .venv/bin/python -m benchmarks.knn_graph [--n N] [--dims D]

Rows: N (100,000) float16 points of the 1,000-component mixture the scale benchmark uses, in memory; k = 50,
cosine similarity. Methods, each timed from the rows to the (N, k) graph:

- `cells`: lightning_modules.search.cell_search (blocked exact search inside the probed cells), default nlist / nprobe:
  what `knn.index: ivf` runs on the CPU.
- `faiss-ivf`: faiss's IndexIVFScalarQuantizer (float16 codes) with the same nlist / nprobe, every row a query
  (the CPU path before cell_search).
- `faiss-hnsw`: faiss's IndexHNSWFlat (M = 32, efConstruction = 40), efSearch = 64.
- `pynndescent`: NNDescent with its defaults (the kNN-graph library UMAP uses), numba compilation included in
  a first call on 2,000 rows that is not timed.

Recall@50 against exact search on 1,000 rows; the table gives each method's time as a ratio to `cells` and its
recall, and the machine's GEMM peak.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

K = 50


def graph_by_cells(x):
    from lightning_modules.search.neighbours import knn_graph

    return knn_graph(x, K, index="ivf", use_gpu=False)[0]


def graph_by_faiss_ivf(x):
    from lightning_modules.search.neighbours import faiss_ivf, ivf_settings
    from lightning_modules.search.rows import l2_normalise, without_self

    index = faiss_ivf(x, *ivf_settings(len(x)))
    unit = l2_normalise(x)
    index.add(unit)
    similarities, found = index.search(unit, K + 1)
    return without_self(found, similarities, np.arange(len(x)), K)[0]


def graph_by_faiss_hnsw(x):
    import faiss

    from lightning_modules.search.rows import l2_normalise, without_self

    unit = l2_normalise(x)
    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.add(unit)
    index.hnsw.efSearch = 64
    similarities, found = index.search(unit, K + 1)
    return without_self(found, similarities, np.arange(len(x)), K)[0]


def graph_by_pynndescent(x):
    from pynndescent import NNDescent

    from lightning_modules.search.rows import without_self

    found, distances = NNDescent(np.asarray(x, dtype=np.float32), n_neighbors=K + 1, metric="cosine",
                                 random_state=0).neighbor_graph
    return without_self(found, -distances, np.arange(len(x)), K)[0]


METHODS = {"cells": graph_by_cells, "faiss-ivf": graph_by_faiss_ivf, "faiss-hnsw": graph_by_faiss_hnsw,
           "pynndescent": graph_by_pynndescent}


def main() -> None:
    from benchmarks.clustering import sphere_mixture
    from benchmarks.common import GEMM_NOTE, gemm_gflops, report, step
    from lightning_modules.search.neighbours import graph_recall

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    args = parser.parse_args()
    x = sphere_mixture(args.n, args.dims)
    graph_by_pynndescent(x[:2000])  # numba compiles here, untimed
    rows, seconds = [("gemm_peak_gflops", gemm_gflops(), GEMM_NOTE), ("n", args.n, f"x {args.dims} float16")], {}
    for name, method in METHODS.items():
        step(f"{name} graph of {args.n:,} rows")
        started = time.perf_counter()
        graph = method(x)
        seconds[name] = time.perf_counter() - started
        recall = graph_recall(x, graph, 1000)
        rows += [(f"{name}_seconds", seconds[name], ""), (f"{name}_recall_at_50", recall, "1,000 rows against exact"),
                 (f"{name}_time_vs_cells", seconds[name] / seconds["cells"], "> 1: slower than cells")]
    report("knn_graph", rows)


if __name__ == "__main__":
    main()
