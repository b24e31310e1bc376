"""The update step's per-cluster sums, compiled by numba so that each chunk's rows are summed while they are still
in cache from the assignment GEMM.

Why numba: numpy has no fused "add each row to its cluster's sum", a sparse one-hot product per 1,024-row chunk
cost ~8% of a pass in scipy's call overhead, and one product over all of a thread's rows read every row from memory
a second time (the loop below took ~3 ms off a ~70 ms pass at 100k x 384, K = 100). scikit-learn's
Cython loop (`_k_means_lloyd.pyx`) sums the same way, row by row after each chunk's GEMM. `nogil` lets the k-means
threads run it side by side; `cache` keeps the machine code on disk (`make install` compiles it once,
`workflow.warm`). The rows of each cluster are added in row order in float32, as the one-hot product added them.
"""

from __future__ import annotations

import numba


@numba.njit(nogil=True, cache=True)
def add_rows_to_clusters(rows, labels, sums):  # pragma: no cover - compiled
    """sums[labels[i]] += rows[i] for every row i, in place: `rows` (n, D), `labels` (n,), `sums` (K, D)."""
    for i in range(rows.shape[0]):
        total, row = sums[labels[i]], rows[i]
        for column in range(row.shape[0]):
            total[column] += row[column]


# The signature k-means calls it with, loaded from numba's cache (compiled on a miss) when this module is imported:
# the job server imports it, so the jobs it forks start with the machine code in memory (loading it in each job, and
# numba's compiler with it, cost ~0.6 s a k-means job)
add_rows_to_clusters.compile((numba.float32[:, ::1], numba.int64[::1], numba.float32[:, ::1]))
