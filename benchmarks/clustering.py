"""kNN graph and k-means against scikit-learn, measured side by side in one run:

    .venv/bin/python -m benchmarks.clustering [--quick] [--full]

- kNN graph (faiss, exact cosine, k=50) on synthetic N in {10k, 100k} (10k only with --quick), d=384:
  GFLOP/s, % of the GEMM peak, and the time ratio against NearestNeighbors(algorithm="brute").
- k-means: ours (own Lloyd loop, no subsampling) against KMeans(algorithm="lloyd") from the same initial centroids
  for the same iterations, N=100k, d=384, K=100: speed-up, inertia ratio, % of peak.
- k-means' ceiling: the assignment GEMM alone, chunked as the loop does it, as % of the GEMM peak (K = 100 is a
  narrow matrix: BLAS runs it below the square GEMM's peak), and ours as % of that ceiling.
- Each library's k-means defaults end to end (initialisation included): time and inertia.
- Scaling of both with N (10k, 30k, 100k; 300k with --full): the fitted exponent, a log-log plot, and the
  peak resident memory of a fresh process at the largest N.
- IVF against exact search (float16 embeddings, a mixture of 1,000 clusters on the sphere, N = 200k; 50k with
  --quick): 10,000 queries, k = 50, the default nlist / nprobe: speed-up of the search and recall@50.
- `--only knn` / `--only kmeans` measures one of the two (saved as clustering-<which>.json).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def timed(action):
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def knn_seconds(x, k=50):
    from lightning_modules.search.neighbours import knn_graph

    return timed(lambda: knn_graph(x, k))[0]


def sphere_mixture(n, dims=384, components=1000, spread=0.05, seed=0) -> np.ndarray:
    """float16 points around `components` random unit centres (a stand-in for clustered image embeddings)."""
    from lightning_modules.search.rows import l2_normalise

    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((components, dims), dtype=np.float32))
    noise = spread * rng.standard_normal((n, dims), dtype=np.float32)
    return (centres[rng.integers(0, components, n)] + noise).astype(np.float16)


def ivf_against_exact(x, k=50, n_queries=10_000):
    """(exact search seconds, IVF search seconds, recall@k of IVF against exact) for the same queries."""
    from lightning_modules.search.neighbours import build_index, search

    queries = x[np.linspace(0, len(x) - 1, n_queries).astype(int)]
    exact_s, (_, exact) = timed(lambda: search(build_index(x, "exact"), queries, k))
    ivf = build_index(x, "ivf")
    ivf_s, (_, found) = timed(lambda: search(ivf, queries, k))
    recall = np.mean([len(np.intersect1d(a, b)) for a, b in zip(found, exact)]) / k
    return exact_s, ivf_s, recall, ivf.nlist, ivf.nprobe


def same_start(x, k=100, seed=0) -> np.ndarray:
    return x[np.random.default_rng(seed).choice(len(x), k, replace=False)]


def ours_kmeans(x, start, iterations=20):
    """(seconds, fitted) of our Lloyd from `start` for `iterations` iterations."""
    from lightning_modules.clustering.kmeans import LloydKMeans

    return timed(lambda: LloydKMeans(len(start), max_iter=iterations, tol=0).fit(x, init_centroids=start))


def kmeans_rounds(x, k=100, iterations=20, rounds=5) -> dict[str, np.ndarray]:
    """Ours and scikit-learn's Lloyd from the same start, the assignment GEMM alone (the ceiling) and the GEMM peak,
    measured one after the other in each of `rounds` rounds. A ratio is taken within its round and the median over
    rounds reported: this machine's speed drifts by tens of percent within minutes, so a ratio of two measurements
    minutes apart would measure the drift."""
    from sklearn.cluster import KMeans

    from benchmarks.common import gemm_gflops

    start = same_start(x, k)
    # untimed: the first fit of a process imports numba and loads the compiled loop (~1 s, paid once by the job
    # server, not per job), scikit-learn starts its thread pool
    ours_kmeans(x[:10_000], start, 1)
    KMeans(k, init=start, n_init=1, max_iter=1, algorithm="lloyd").fit(x[:10_000])
    measured = {name: [] for name in ("peak", "ours_s", "ours_inertia", "sklearn_s", "sklearn_inertia", "ceiling_s")}
    for _ in range(rounds):
        measured["peak"].append(gemm_gflops())
        seconds, ours = ours_kmeans(x, start, iterations)
        measured["ours_s"].append(seconds)
        measured["ours_inertia"].append(ours.inertia_)
        seconds, theirs = timed(lambda: KMeans(k, init=start, n_init=1, max_iter=iterations, tol=0,
                                               algorithm="lloyd").fit(x))
        measured["sklearn_s"].append(seconds)
        measured["sklearn_inertia"].append(theirs.inertia_)
        measured["ceiling_s"].append(assignment_gemm_seconds(x, start, iterations))
    return {name: np.array(values) for name, values in measured.items()}


def assignment_gemm_seconds(x, start, iterations=20) -> float:
    """The ceiling of Lloyd's arithmetic on this machine: the assignment GEMM alone, as the loop computes it (the
    rows split over the cores, single-threaded BLAS, 1,024-row chunks against the K centroids of `start`), with no
    argmin and no sums."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from lightning_modules.clustering.kmeans import CHUNK_ROWS, _worker_count

    centroids_t = np.ascontiguousarray(-2 * start.T)
    workers = _worker_count()
    bounds = np.linspace(0, len(x), workers + 1).astype(int)

    def rows(lo: int, hi: int) -> None:
        out = np.empty((CHUNK_ROWS, len(start)), dtype=np.float32)
        for first in range(lo, hi, CHUNK_ROWS):
            chunk = x[first:min(first + CHUNK_ROWS, hi)]
            np.matmul(chunk, centroids_t, out=out[:len(chunk)])

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()
        for _ in range(iterations):
            list(pool.map(lambda bound: rows(*bound), zip(bounds[:-1], bounds[1:])))
        return time.perf_counter() - started


def kmeans_defaults(x, k=100, seed=0):
    """Each library's own defaults end to end, initialisation included: scikit-learn's KMeans (k-means++,
    one init, up to 300 iterations, tol 1e-4) and ours (k-means++ through scikit-learn's kmeans_plusplus, one
    init, up to 100 iterations, tol 1e-4)."""
    from sklearn.cluster import KMeans

    from lightning_modules.clustering.kmeans import LloydKMeans

    ours_s, ours = timed(lambda: LloydKMeans(k, seed=seed).fit(x))
    theirs_s, theirs = timed(lambda: KMeans(k, random_state=seed).fit(x))
    return ours_s, ours.inertia_, theirs_s, theirs.inertia_


PEAK_RSS_JOB = """
import sys
import numpy as np
from benchmarks.common import peak_rss_mib
n, what = int(sys.argv[1]), sys.argv[2]
x = np.random.default_rng(0).standard_normal((n, 384), dtype=np.float32)
if what == "knn":
    from lightning_modules.search.neighbours import knn_graph
    knn_graph(x, 50)
else:
    from lightning_modules.clustering.kmeans import LloydKMeans
    LloydKMeans(100, n_init=1, max_iter=20, tol=0).fit(x)
print(peak_rss_mib())
"""


def peak_rss_mb(n: int, what: str) -> float:
    """Peak resident memory (MiB) of a fresh process building the kNN graph or running k-means on N points."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", PEAK_RSS_JOB, str(n), what], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.split()[-1])


def fitted_exponent(sizes, seconds) -> float:
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true", help="scale up to N = 300k")
    parser.add_argument("--only", choices=("knn", "kmeans"), help="measure one of the two")
    args = parser.parse_args()
    measure = {"knn", "kmeans"} if args.only is None else {args.only}
    from sklearn.neighbors import NearestNeighbors

    from benchmarks.common import GEMM_NOTE, gemm_gflops, report, step

    dims, k_nn, iterations = 384, 50, 20
    rng = np.random.default_rng(0)
    peak = gemm_gflops()
    rows = [("gemm_gflops", peak, GEMM_NOTE)]

    for n in ((10_000,) if args.quick else (10_000, 100_000)) if "knn" in measure else ():
        step(f"kNN graph on {n:,} x {dims}: faiss, then scikit-learn brute force")
        x = rng.standard_normal((n, dims), dtype=np.float32)
        ours = knn_seconds(x, k_nn)
        theirs = timed(lambda: NearestNeighbors(n_neighbors=k_nn + 1, metric="cosine", algorithm="brute")
                       .fit(x).kneighbors(x))[0]
        gflops = 2 * n * n * dims / ours / 1e9
        rows += [(f"knn_{n // 1000}k_seconds", ours, f"faiss exact cosine, k={k_nn}, d={dims}"),
                 (f"knn_{n // 1000}k_pct_peak", 100 * gflops / peak, f"{gflops:.0f} GFLOP/s"),
                 (f"knn_{n // 1000}k_speedup_vs_sklearn", theirs / ours, f"sklearn brute: {theirs:.2f} s")]
    if "knn" in measure:
        n = 50_000 if args.quick else 200_000
        step(f"IVF against exact search on {n:,} float16 points")
        exact_s, ivf_s, recall, nlist, nprobe = ivf_against_exact(sphere_mixture(n, dims), k_nn)
        rows += [("ivf_search_speedup", exact_s / ivf_s, f"N={n}, 10,000 queries, k={k_nn}, nlist {nlist}, "
                                                         f"nprobe {nprobe}; exact {exact_s:.1f} s"),
                 ("ivf_recall_at_50", recall, "target >= 0.95 (at N = 2M: >= 20x)")]

    if "kmeans" in measure:
        n = 10_000 if args.quick else 100_000
        step(f"k-means on {n:,} x {dims}, K 100: ours and scikit-learn's Lloyd from one start, 5 rounds, then defaults")
        x = rng.standard_normal((n, dims), dtype=np.float32)
        measured = kmeans_rounds(x, 100, iterations, rounds=5)
        flops = 2 * n * 100 * dims * iterations  # the assignment GEMMs dominate
        pct_peak = 100 * flops / measured["ours_s"] / 1e9 / measured["peak"]
        ceiling_pct_peak = 100 * flops / measured["ceiling_s"] / 1e9 / measured["peak"]
        rows += [("kmeans_seconds", float(np.median(measured["ours_s"])),
                  f"N={n}, d={dims}, K=100, {iterations} Lloyd iterations, same start; medians of 5 rounds, each ratio "
                  "within its round"),
                 ("kmeans_speedup_vs_sklearn", float(np.median(measured["sklearn_s"] / measured["ours_s"])),
                  f"sklearn lloyd: {np.median(measured['sklearn_s']):.2f} s; per round "
                  + " ".join(f"{ratio:.2f}" for ratio in measured["sklearn_s"] / measured["ours_s"])),
                 ("kmeans_inertia_ratio", float(np.max(measured["ours_inertia"] / measured["sklearn_inertia"])),
                  "ours / sklearn (no subsampling)"),
                 ("kmeans_pct_peak", float(np.median(pct_peak)),
                  f"GEMM peak of each round {', '.join(f'{peak:.0f}' for peak in measured['peak'])}; per round "
                  + " ".join(f"{pct:.1f}" for pct in pct_peak)),
                 ("kmeans_gemm_ceiling_pct_peak", float(np.median(ceiling_pct_peak)),
                  "the assignment GEMM alone, as the loop chunks it on both cores: what Lloyd's arithmetic allows"),
                 ("kmeans_pct_of_ceiling", float(np.median(100 * measured["ceiling_s"] / measured["ours_s"])),
                  "the ceiling's time / ours")]
        ours_s, ours_inertia, theirs_s, theirs_inertia = kmeans_defaults(x, 100)
        rows += [("kmeans_defaults_seconds", ours_s, "ours end to end: one k-means++ start, up to 100 iterations"),
                 ("kmeans_defaults_sklearn_seconds", theirs_s, "sklearn KMeans() end to end: k-means++ init, lloyd"),
                 ("kmeans_defaults_inertia_ratio", ours_inertia / theirs_inertia,
                  "ours / sklearn, each with its defaults")]

    sizes = [10_000, 30_000] if args.quick else [10_000, 30_000, 100_000] + ([300_000] if args.full else [])
    scaling = {"kNN graph": ("knn", lambda x: knn_seconds(x, k_nn)),
               "k-means": ("kmeans", lambda x: ours_kmeans(x, same_start(x), iterations)[0])}
    scaling = {name: (what, action) for name, (what, action) in scaling.items() if what in measure}
    times = {name: [] for name in scaling}
    for size in sizes:
        step(f"scaling with N: {', '.join(scaling)} at N = {size:,}")
        x = rng.standard_normal((size, dims), dtype=np.float32)
        for name, (_, action) in scaling.items():
            times[name].append(action(x))
    largest = sizes[-1]
    data_mb = largest * dims * 4 / 2**20
    for name, (what, _) in scaling.items():
        rows += [(f"{what}_scaling_exponent", fitted_exponent(sizes, times[name]),
                  "time ~ N^x (exact kNN: 2, Lloyd: 1)"),
                 (f"{what}_{largest // 1000}k_peak_rss_mb", peak_rss_mb(largest, what), f"data alone: {data_mb:.0f} MiB")]
    name = "clustering" if args.only is None else f"clustering-{args.only}"
    report(name, rows)
    plot_scaling(sizes, times, f"results/bench/{name.replace('clustering', 'scaling')}.png")


def plot_scaling(sizes, series, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5))
    for name, seconds in series.items():
        axes.loglog(sizes, seconds, marker="o", label=f"{name} (slope {fitted_exponent(sizes, seconds):.2f})")
    axes.set_xlabel("N (d = 384)")
    axes.set_ylabel("seconds")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"  plot: {path}")


if __name__ == "__main__":
    main()
