"""IVF search on the CPU as blocked exact search inside the probed cells: the `knn.index: ivf` of a CPU run.

Rows are grouped into `nlist` cells by their nearest spherical k-means centroid, as in faiss's IVF; what
differs is the order of the work. faiss's `IndexIVF*` scans the probed cells query by query and decodes its
float16 codes on the fly, about 1/5 of the GEMM peak on these machines (benchmarks.scale, 2026-11-26); here
the same comparisons are reordered into large matrix products that BLAS runs at its in-memory speed:

- `graph(k)`: every row is a query. The rows of one cell are searched together against the rows of the
  `nprobe` cells whose centroids are nearest to that cell's centroid (its own first): one GEMM and one top-k
  per cell. Cells are visited in a greedy nearest-centroid order, so consecutive cells probe mostly the same
  cells and a float32 LRU cache keeps those converted.
- `search(queries, k)`: a few queries per cell. Each query probes its own `nprobe` nearest cells (faiss's
  rule); the loop visits every stored cell once, multiplies it with the queries that probe it and keeps
  their k best there; one top-k over each query's nprobe x k then merges them.

The index holds the centroids and the rows in cell order, as given (float16 artifacts stay float16: the same
memory as faiss's float16 codes), with their inverse norms; a cell's rows are converted and scaled when it
is visited, so beside them resident memory is the outputs, the cache and one block.
`flops_` counts the multiply-adds x 2 actually spent (training, assignment and the blocks), what the scale
benchmark divides by its time; `seconds_` the time of each phase (train, assign, graph, search).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import torch

from lightning_modules.core.io import gather_rows, release_rows, row_chunks
from lightning_modules.search.rows import NORM_EPS, float_rows, ivf_training_rows, l2_normalise, without_self

ASSIGN_ROWS = 4096          # rows per assignment block: the (rows x nlist) scores stay ~93 MB at nlist 5,657
CACHE_BYTES = 256 * 2**20   # converted cells kept by the graph loop
SEARCH_BUFFER_BYTES = 256 * 2**20  # search: every query's k best in each of its probed cells, per chunk of queries
# faiss's k-means default is 25 iterations; the cells only route the search (every probed row is compared
# exactly), and on the scale benchmark's mixture 3, 10 and 25 iterations gave the same graph recall at 200k
TRAIN_ITERATIONS = 10


@contextmanager
def one_thread_per_worker():
    """Yields the number of workers (torch's thread budget on entry: the job's) while every BLAS and torch call
    runs on its calling thread. The blocks are many and independent, so each worker thread takes its share of
    them whole: numpy's multi-threaded GEMM followed by a multi-threaded torch op waits for OpenBLAS's spinning
    threads (8 ms lost per switch, measured), and the top-k and gathers would run on one core anyway."""
    from threadpoolctl import threadpool_limits

    workers = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield workers
    finally:
        torch.set_num_threads(workers)


def in_workers(work, shares: list, workers: int) -> list:
    """[work(share) for share in shares] on `workers` threads (numpy, BLAS and torch release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, shares))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, columns) of the k largest entries of each row, largest first (torch.topk: ~5x faster than
    numpy's argpartition on these blocks)."""
    values, columns = torch.topk(torch.from_numpy(scores), min(k, scores.shape[1]), dim=1)
    return values.numpy(), columns.numpy()


class CellIndex:
    """Cosine IVF index over the rows of `embeddings` (any float dtype, memory-mapped or not)."""

    def __init__(self, nlist: int, nprobe: int, seed: int = 0, train_iterations: int = TRAIN_ITERATIONS,
                 cache_bytes: int = CACHE_BYTES):
        self.nlist, self.nprobe, self.seed = nlist, nprobe, seed
        self.train_iterations, self.cache_bytes = train_iterations, cache_bytes

    def fit(self, embeddings: np.ndarray) -> "CellIndex":
        import faiss
        started = time.perf_counter()
        n, dims = embeddings.shape
        sample = ivf_training_rows(n, self.nlist, self.seed)
        kmeans = faiss.Kmeans(dims, self.nlist, niter=self.train_iterations, spherical=True, seed=self.seed)
        kmeans.train(l2_normalise(gather_rows(embeddings, sample)))  # read, not mapped: a sample touches every page
        self.centroids_ = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
        self.flops_ = 2.0 * len(sample) * self.nlist * dims * self.train_iterations
        self.seconds_ = {"train": time.perf_counter() - started, "graph": 0.0, "search": 0.0}
        self.cell_, inverse_norm = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.float32)
        with one_thread_per_worker() as workers:
            in_workers(lambda chunks: self._assign(embeddings, chunks, inverse_norm),
                       np.array_split(list(row_chunks(n, ASSIGN_ROWS)), workers), workers)
        self.flops_ += 2.0 * n * self.nlist * dims
        self.order_ = np.argsort(self.cell_, kind="stable")
        self.offsets_ = np.concatenate([[0], np.cumsum(np.bincount(self.cell_, minlength=self.nlist))])
        # the rows in cell order, as given (float16 stays float16), as faiss's IVF holds its codes: a cell is
        # then one contiguous block (gathering its rows from the artifact at random cost 5 us per row, measured)
        self.rows_ = np.empty((n, dims), dtype=embeddings.dtype if embeddings.dtype in (np.float16, np.float32)
                              else np.float32)
        self.inverse_norm_ = inverse_norm[self.order_]
        position = np.empty(n, dtype=np.int64)
        position[self.order_] = np.arange(n)
        for rows in row_chunks(n, ASSIGN_ROWS):
            self.rows_[position[rows]] = embeddings[rows]
            release_rows(embeddings, rows)
        self.seconds_["assign"] = time.perf_counter() - started - self.seconds_["train"]
        return self

    def _assign(self, embeddings: np.ndarray, chunks: list[slice], inverse_norm: np.ndarray) -> None:
        for rows in chunks:
            chunk = float_rows(embeddings[rows])
            release_rows(embeddings, rows)
            inverse_norm[rows] = 1 / (np.linalg.norm(chunk, axis=1) + NORM_EPS)
            self.cell_[rows] = (chunk @ self.centroids_.T).argmax(axis=1)  # the norm does not change the argmax

    # ----- cells -----

    def cell_ids(self, cell: int) -> np.ndarray:
        return self.order_[self.offsets_[cell]:self.offsets_[cell + 1]]

    def cell_rows(self, cell: int) -> np.ndarray:
        """The unit float32 rows of one cell."""
        block = slice(self.offsets_[cell], self.offsets_[cell + 1])
        return float_rows(self.rows_[block]) * self.inverse_norm_[block, None]

    def nearest_cells(self, unit_rows: np.ndarray, count: int) -> np.ndarray:
        """(R, count) the `count` cells whose centroids are nearest to each unit row, in no particular order."""
        nearest = np.empty((len(unit_rows), count), dtype=np.int64)

        def select(chunks: list[slice]) -> None:
            for rows in chunks:
                scores = unit_rows[rows] @ self.centroids_.T
                nearest[rows] = np.argpartition(-scores, count - 1, axis=1)[:, :count] if count < self.nlist else \
                    np.arange(self.nlist)

        with one_thread_per_worker() as workers:
            in_workers(select, np.array_split(list(row_chunks(len(unit_rows), ASSIGN_ROWS // 4)), workers), workers)
        self.flops_ += 2.0 * len(unit_rows) * self.nlist * unit_rows.shape[1]
        return nearest

    def cell_probes(self) -> np.ndarray:
        """(nlist, nprobe) each cell's probed cells: the cells with the nearest centroids, its own first."""
        probes = np.empty((self.nlist, self.nprobe), dtype=np.int64)
        for rows in row_chunks(self.nlist, ASSIGN_ROWS):
            scores = self.centroids_[rows] @ self.centroids_.T
            scores[np.arange(scores.shape[0]), np.arange(rows.start, rows.stop)] = np.inf
            probes[rows] = top_k(scores, self.nprobe)[1]
        return probes

    def visit_order(self, probes: np.ndarray) -> list[int]:
        """Every cell once, each followed by the nearest unvisited cell among its probed cells (else by all
        centroids): consecutive cells then share most of their probed cells."""
        visited = np.zeros(self.nlist, dtype=bool)
        order = [0]
        visited[0] = True
        for _ in range(self.nlist - 1):
            near = probes[order[-1]]
            free = near[~visited[near]]
            order.append(int(free[0]) if len(free) else
                         int(np.argmax(np.where(visited, -np.inf, self.centroids_ @ self.centroids_[order[-1]]))))
            visited[order[-1]] = True
        return order

    # ----- searches -----

    def graph(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) int32 neighbour ids and float32 similarities of every stored row, nearest first, itself
        excluded; -1 (similarity -inf) where the probed cells held fewer than k other rows."""
        started, n = time.perf_counter(), len(self.cell_)
        indices = np.empty((n, k), dtype=np.int32)
        similarities = np.empty((n, k), dtype=np.float32)
        probes = self.cell_probes()
        with one_thread_per_worker() as workers:  # each worker a contiguous stretch of the visit order
            shares = np.array_split(self.visit_order(probes), workers)
            self.flops_ += sum(in_workers(lambda cells: self._graph_cells(cells, probes, k, indices, similarities),
                                          shares, workers))
        self.seconds_["graph"] += time.perf_counter() - started
        return indices, similarities

    def _graph_cells(self, cells: np.ndarray, probes: np.ndarray, k: int, indices: np.ndarray,
                     similarities: np.ndarray) -> float:
        """Fill the rows of `cells` (one worker's share, with its own cache); returns the FLOPs spent."""
        cache, cached_bytes, flops = OrderedDict(), 0, 0.0

        def rows_of(cell: int) -> np.ndarray:
            nonlocal cached_bytes
            if cell in cache:
                cache.move_to_end(cell)
                return cache[cell]
            rows = cache[cell] = self.cell_rows(cell)
            cached_bytes += rows.nbytes
            while cached_bytes > self.cache_bytes * len(cells) / self.nlist and len(cache) > 1:  # its share
                cached_bytes -= cache.popitem(last=False)[1].nbytes
            return rows

        for cell in cells:
            ids = self.cell_ids(cell)
            if not len(ids):
                continue
            queries = rows_of(cell)
            candidates = np.concatenate([rows_of(probe) for probe in probes[cell]])
            candidate_ids = np.concatenate([self.cell_ids(probe) for probe in probes[cell]])
            scores = queries @ candidates.T
            flops += 2.0 * scores.size * queries.shape[1]
            values, columns = top_k(scores, k + 1)
            found = np.full((len(ids), k + 1), -1, dtype=np.int64)
            found_similarities = np.full((len(ids), k + 1), -np.inf, dtype=np.float32)
            found[:, :values.shape[1]], found_similarities[:, :values.shape[1]] = candidate_ids[columns], values
            indices[ids], similarities[ids] = without_self(found, found_similarities, ids, k)
        return flops

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) similarities and ids of each query's k nearest stored rows among its `nprobe` cells (faiss's
        IVF search, and its -1 / -inf where they hold fewer than k rows). Queries go in chunks whose per-cell
        results (queries x nprobe x k) stay within SEARCH_BUFFER_BYTES."""
        started = time.perf_counter()
        similarities = np.empty((len(queries), k), dtype=np.float32)
        ids = np.empty((len(queries), k), dtype=np.int64)
        for rows in row_chunks(len(queries), max(1, SEARCH_BUFFER_BYTES // (12 * self.nprobe * k))):
            similarities[rows], ids[rows] = self._search_chunk(l2_normalise(queries[rows]), k)
        self.seconds_["search"] += time.perf_counter() - started
        return similarities, ids

    def _search_chunk(self, unit: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        probed = self.nearest_cells(unit, self.nprobe).ravel()  # (query, slot) pairs, flattened
        by_cell = np.argsort(probed, kind="stable")
        bounds = np.searchsorted(probed[by_cell], np.arange(self.nlist + 1))
        asked = np.flatnonzero((np.diff(bounds) > 0) & (np.diff(self.offsets_) > 0))
        # each (query, probed cell) pair gets its own k slots, written by the one worker that visits the cell
        found_similarities = np.full((len(unit), self.nprobe, k), -np.inf, dtype=np.float32)
        found_ids = np.full((len(unit), self.nprobe, k), -1, dtype=np.int64)

        def visit(cells: np.ndarray) -> float:
            flops = 0.0
            for cell in cells:
                asking, slot = np.divmod(by_cell[bounds[cell]:bounds[cell + 1]], self.nprobe)
                scores = unit[asking] @ self.cell_rows(cell).T
                flops += 2.0 * scores.size * unit.shape[1]
                values, columns = top_k(scores, k)
                found_similarities[asking, slot, :values.shape[1]] = values
                found_ids[asking, slot, :values.shape[1]] = self.cell_ids(cell)[columns]
            return flops

        with one_thread_per_worker() as workers:
            self.flops_ += sum(in_workers(visit, np.array_split(asked, workers), workers))
        values, columns = top_k(found_similarities.reshape(len(unit), -1), k)
        return values, np.take_along_axis(found_ids.reshape(len(unit), -1), columns, axis=1)
