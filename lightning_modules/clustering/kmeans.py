"""Lloyd's k-means, scikit-learn-style: our own CPU loop, faiss on a GPU.

Why our own loop on CPU: faiss's CPU k-means searches every point against the centroids and then makes a
second pass over the data to update them, which ran at ~50% of this machine's GEMM peak and 0.8x
scikit-learn's Lloyd speed (benchmarks/clustering.py). The loop below does what scikit-learn's Cython does:
the rows are split across threads with single-threaded BLAS, and each thread walks its rows in chunks that
stay in cache from the GEMM against the centroids to the argmin and to the per-cluster sums (`nearest.py`,
compiled by numba; imported on the first fit, as numba and the cached machine code cost ~1 s that a job importing
the registry need not pay, and preloaded by the job server). It imports neither torch nor faiss on CPU. On a GPU, faiss's k-means is the well-kept choice
and is used as it is.

Out of core: the data may be a memory map (float16 on disk); every chunk is converted to float32 on its own, so
no full float32 copy is ever made (the conversion costs ~1% of an iteration's GEMM at K = 100).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lightning_modules.core.io import release_rows, row_chunks

CHUNK_ROWS = 1024  # a chunk's rows and its (rows x K) distances stay in cache from the GEMM to the argmin


def _worker_count() -> int:
    """The CPUs this process may use, capped by OMP_NUM_THREADS: Snakemake sets it to a job's `threads`, as
    SLURM's cpus-per-task bounds the affinity; the other numeric libraries (torch, faiss, BLAS) read it too."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    requested = os.environ.get("OMP_NUM_THREADS", "")
    return min(available, int(requested)) if requested.isdigit() and int(requested) > 0 else available


class _Assigner:
    """Nearest centroids of all rows in one pass, the rows split across threads (BLAS single-threaded)."""

    def __init__(self, x: np.ndarray, pool: ThreadPoolExecutor, workers: int):
        self.x, self.pool = x, pool
        bounds = np.linspace(0, len(x), workers + 1).astype(int)
        self.ranges = list(zip(bounds[:-1], bounds[1:]))

    def __call__(self, centroids: np.ndarray, count: int = 1, distances: bool = False, sums: bool = False):
        """(N, count) nearest centroids, nearest first; with `distances`, the float64 squared distance |x - c|^2
        to the nearest (N,); with `sums`, the per-cluster sums of the rows (K, D) for the update step."""
        minus_twice_centroids_t = np.ascontiguousarray(-2.0 * centroids.T)
        centroid_norms = np.einsum("ij,ij->i", centroids, centroids)
        parts = list(self.pool.map(
            lambda lo_hi: self._rows(*lo_hi, minus_twice_centroids_t, centroid_norms, count, distances, sums),
            self.ranges))
        nearest = np.concatenate([part[0] for part in parts])
        squared = np.concatenate([part[1] for part in parts]) if distances else None
        totals = np.sum([part[2] for part in parts], axis=0) if sums else None
        return nearest, squared, totals

    def _rows(self, lo, hi, minus_twice_centroids_t, centroid_norms, count, distances, sums):
        from lightning_modules.clustering.nearest import add_rows_to_clusters

        nearest = np.empty((hi - lo, count), dtype=np.int64)
        squared = np.empty(hi - lo, dtype=np.float64) if distances else None
        totals = np.zeros((len(centroid_norms), self.x.shape[1]), dtype=np.float32) if sums else None
        chunk = np.empty((min(CHUNK_ROWS, hi - lo), len(centroid_norms)), dtype=np.float32)
        for start in range(lo, hi, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, hi)
            rows, out = np.asarray(self.x[start:stop], dtype=np.float32), slice(start - lo, stop - lo)
            distance = np.matmul(rows, minus_twice_centroids_t, out=chunk[:stop - start])
            distance += centroid_norms
            for rank in range(count):  # repeated argmins: cheaper than a partial sort for count <= 2
                nearest[out, rank] = distance.argmin(axis=1)
                if rank == 0 and distances:  # |x|^2 added in float64 while the rows are in cache
                    squared[out] = np.take_along_axis(distance, nearest[out, :1], axis=1)[:, 0]
                    squared[out] += np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
                if rank < count - 1:
                    np.put_along_axis(distance, nearest[out, rank:rank + 1], np.inf, axis=1)
            if sums:
                add_rows_to_clusters(rows, nearest[out, 0], totals)
            release_rows(self.x, slice(start, stop))  # after the last use: float32 rows of a memory map are a view
        return nearest, squared, totals


def cluster_sums(labels: np.ndarray, rows: np.ndarray, n_clusters: int) -> np.ndarray:
    """(K, D) per-cluster sums of `rows`: a (K x rows) one-hot matrix, built directly in CSC form, times the rows."""
    from scipy.sparse import csc_matrix

    one_hot = csc_matrix((np.ones(len(labels), dtype=np.float32), labels, np.arange(len(labels) + 1)),
                         shape=(n_clusters, len(labels)))
    return one_hot @ rows


def _float_rows(x: np.ndarray, index, dtype=np.float32) -> np.ndarray:
    # numpy's conversion, not search.rows.float_rows: importing torch would add 0.45 GiB to this torch-free stage
    # (peak RSS 2.02 against 1.57 GiB at 2M rows) for a few passes that are not its bottleneck
    rows = np.asarray(x[index], dtype=dtype)
    if isinstance(index, slice):
        release_rows(x, index)
    return rows


def _mean_variance(x: np.ndarray) -> float:
    """The mean over dimensions of the per-dimension variance (scikit-learn's tol scale), by chunks."""
    total, squares = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for rows in row_chunks(len(x), 65536):
        chunk = _float_rows(x, rows, np.float64)
        total += chunk.sum(0)
        squares += (chunk ** 2).sum(0)
    mean = total / len(x)
    return float(np.mean(np.maximum(squares / len(x) - mean ** 2, 0)))


def lloyd(assign: _Assigner, centroids: np.ndarray, max_iter: int, tol: float, spherical: bool) -> np.ndarray:
    """Lloyd iterations from `centroids` until the centroids move less than `tol` (scikit-learn's rule:
    squared shift <= tol x mean per-dimension variance) or `max_iter`.

    An empty cluster takes the point farthest from its centroid, as in scikit-learn."""
    x = assign.x
    centroids = centroids.astype(np.float32, copy=True)
    threshold = tol * _mean_variance(x) if tol > 0 else 0.0
    for _ in range(max_iter):
        nearest, _, sums = assign(centroids, sums=True)
        labels = nearest[:, 0]
        counts = np.bincount(labels, minlength=len(centroids))
        if not counts.all():
            _, distances, _ = assign(centroids, distances=True)  # rare: the distances only when a cluster is empty
            for empty, farthest in zip(np.flatnonzero(counts == 0), np.argsort(-distances)):
                row = _float_rows(x, farthest)
                sums[labels[farthest]] -= row
                counts[labels[farthest]] -= 1
                sums[empty], counts[empty] = row, 1
        # a cluster emptied by giving its only point away keeps its centroid
        updated = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids)
        if spherical:
            updated /= np.maximum(np.linalg.norm(updated, axis=1, keepdims=True), 1e-12)
        shift = float(np.sum((updated - centroids) ** 2))
        centroids = updated.astype(np.float32)
        if shift <= threshold:
            break
    return centroids


class LloydKMeans:
    """Lloyd's k-means: `n_init` restarts, the one with the lowest inertia kept.

    init: "k-means++" (scikit-learn's greedy `kmeans_plusplus`, the default) or "random" (K distinct rows).
    init_sample: run k-means++ on at most this many random rows (None: on every training row); at millions of
        rows the seeding would otherwise cost more than Lloyd itself.

    tol: stop once the centroids' squared shift is at most tol x the data's mean variance (0: once they stop
        moving at all, else after max_iter).
    max_points_per_centroid: train on a random subsample of K x this many points (faiss's habit, 256 there);
        None (the default) trains on every point.
    spherical: centroids are L2-normalised after each step (cosine k-means; pass L2-normalised data).
    After `fit`: cluster_centers_ (K, D), labels_ (N,), top2_ (N, 2) the two nearest centroids, inertia_.
    """

    SETTINGS_BASE = "grid"
    SETTINGS = {
        "n_init": {"type": "integer", "minimum": 1, "default": 1,
            "description": "restarts; the one with the lowest inertia is kept"},
        "init": {"enum": ["k-means++", "random"], "default": "k-means++",
            "description": "k-means++: scikit-learn's greedy kmeans_plusplus; random: K distinct rows"},
        "init_sample": {"type": ["integer", "null"], "minimum": 1, "default": None,
            "description": "run k-means++ on at most this many random rows (null: all); for millions of rows"},
        "max_iter": {"type": "integer", "minimum": 1, "default": 100},
        "tol": {"type": "number", "minimum": 0, "default": 0.0001,
            "description": (
                "stop once the centroids' squared shift is at most tol x the data's mean variance (scikit-learn's "
                "rule); 0 stops only when they no longer move")},
        "spherical": {"type": "boolean", "default": False},
        "max_points_per_centroid": {"type": ["integer", "null"], "minimum": 1, "default": None,
            "description": (
                "train on K x this many random points; null trains on every point (faiss would subsample to 256 per "
                "centroid)")},
        "use_gpu": {"enum": ["auto", True, False], "default": "auto"},
    }
    DEFAULTS = {name: setting["default"] for name, setting in SETTINGS.items()}

    def __init__(
        self,
        n_clusters: int,
        seed: int = 0,
        n_init: int = DEFAULTS["n_init"],
        max_iter: int = DEFAULTS["max_iter"],
        tol: float = DEFAULTS["tol"],
        spherical: bool = DEFAULTS["spherical"],
        max_points_per_centroid: int | None = DEFAULTS["max_points_per_centroid"],
        use_gpu: bool | str = DEFAULTS["use_gpu"],
        verbose: bool = False,
        init: str = DEFAULTS["init"],
        init_sample: int | None = DEFAULTS["init_sample"],
    ):
        if init not in ("k-means++", "random"):
            raise ValueError(f"clustering.methods.kmeans.init = '{init}'; allowed: k-means++, random")
        self.init, self.init_sample = init, init_sample
        self.n_clusters = n_clusters
        self.seed = seed
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.spherical = spherical
        self.max_points_per_centroid = max_points_per_centroid
        self.use_gpu = use_gpu
        self.verbose = verbose

    def _gpu(self) -> bool:
        if self.use_gpu is False:
            return False
        import faiss

        return faiss.get_num_gpus() > 0

    def fit(self, embeddings: np.ndarray, init_centroids: np.ndarray | None = None) -> "LloydKMeans":
        """`init_centroids` (K, D): start Lloyd from these instead of `n_init` random restarts."""
        from threadpoolctl import threadpool_limits

        x = np.asarray(embeddings)  # a memory map stays one: chunks are converted to float32 as they are read
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        n = len(x)
        if not 2 <= self.n_clusters <= n:
            raise ValueError(f"k-means needs 2 <= K <= number of samples ({n}), got K={self.n_clusters}")
        if init_centroids is not None:
            init_centroids = np.ascontiguousarray(init_centroids, dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        train = x
        if self.max_points_per_centroid and n > self.n_clusters * self.max_points_per_centroid:
            train = _float_rows(x, np.sort(rng.choice(n, self.n_clusters * self.max_points_per_centroid,
                                                      replace=False)))
        starts = [init_centroids] if init_centroids is not None else self._starts(train, rng)
        workers = max(1, min(_worker_count(), n // CHUNK_ROWS))
        # the threads split the rows; BLAS must not split them again
        with ThreadPoolExecutor(workers) as pool, threadpool_limits(1, user_api="blas"):
            if self._gpu():
                self.cluster_centers_ = self._fit_faiss_gpu(train, starts)
            else:
                self.cluster_centers_ = self._best_of(starts, _Assigner(train, pool, workers))
            self.top2_, squared, _ = _Assigner(x, pool, workers)(self.cluster_centers_, count=2, distances=True)
        self.top2_ = self.top2_.astype(np.int32)
        self.labels_ = self.top2_[:, 0].copy()
        self.inertia_ = float(np.sum(squared))
        return self

    def _starts(self, train: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """`n_init` initial centroid sets, (K, D) each."""
        if self.init == "random":
            return [_float_rows(train, np.sort(rng.choice(len(train), self.n_clusters, replace=False)))
                    for _ in range(self.n_init)]
        from sklearn.cluster import kmeans_plusplus

        starts = []
        for _ in range(self.n_init):
            sample = np.arange(len(train))
            if self.init_sample and len(train) > max(self.init_sample, self.n_clusters):
                sample = np.sort(rng.choice(len(train), max(self.init_sample, self.n_clusters), replace=False))
            sample = _float_rows(train, sample)
            centres, _ = kmeans_plusplus(sample, self.n_clusters, random_state=int(rng.integers(2**31)))
            starts.append(np.ascontiguousarray(centres, dtype=np.float32))
        return starts

    def _best_of(self, starts: list[np.ndarray], assign: _Assigner) -> np.ndarray:
        """Lloyd from every start; with several, the centroids of the lowest inertia on the training rows."""
        runs = [lloyd(assign, start, self.max_iter, self.tol, self.spherical) for start in starts]
        if len(runs) == 1:
            return runs[0]
        inertias = [float(np.sum(assign(centroids, distances=True)[1])) for centroids in runs]
        if self.verbose:
            print(f"k-means: inertia of each restart {[round(value, 4) for value in inertias]}")
        return runs[int(np.argmin(inertias))]

    def _fit_faiss_gpu(self, train: np.ndarray, starts: list[np.ndarray]) -> np.ndarray:
        """faiss from each start (it runs every iteration: no tol); the lowest final objective is kept."""
        import faiss

        best, best_objective = None, np.inf
        for start in starts:
            kmeans = faiss.Kmeans(train.shape[1], self.n_clusters, niter=self.max_iter, seed=self.seed, nredo=1,
                                  spherical=self.spherical, max_points_per_centroid=len(train),
                                  min_points_per_centroid=1, gpu=True, verbose=self.verbose)
            kmeans.train(np.ascontiguousarray(train, dtype=np.float32), init_centroids=start)
            if kmeans.obj[-1] < best_objective:
                best, best_objective = kmeans.centroids.copy(), kmeans.obj[-1]
        return best

    def fit_predict(self, embeddings: np.ndarray) -> np.ndarray:
        return self.fit(embeddings).labels_
