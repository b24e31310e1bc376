"""The kNN OOD scorer's throughput:

    .venv/bin/python -m benchmarks.ood [--quick]

knn1 and knn50 fitted on N = 100k ID embeddings (d = 384; 10k with --quick), scoring 10k queries: queries/s,
and GFLOP/s of the exact search (2 N d per query) as a share of this machine's GEMM peak.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from benchmarks.clustering import timed
    from benchmarks.common import GEMM_NOTE, gemm_gflops, report
    from lightning_modules.ood import build_scorer

    n, queries, dims = (10_000 if args.quick else 100_000), 10_000, 384
    rng = np.random.default_rng(0)
    train = rng.standard_normal((n, dims), dtype=np.float32)
    test = rng.standard_normal((queries, dims), dtype=np.float32)
    peak = gemm_gflops()
    rows = [("gemm_gflops", peak, GEMM_NOTE)]
    for name in ("knn1", "knn50"):
        scorer = build_scorer(name).fit(train)
        scorer.score(test[:100])  # warm-up
        seconds = min(timed(lambda: scorer.score(test))[0] for _ in range(3))
        gflops = 2 * n * queries * dims / seconds / 1e9
        rows += [(f"ood_{name}_queries_per_s", queries / seconds, f"N={n}, d={dims}, exact cosine (faiss)"),
                 (f"ood_{name}_pct_peak", 100 * gflops / peak, f"{gflops:.0f} GFLOP/s")]
    report("ood", rows)


if __name__ == "__main__":
    main()
