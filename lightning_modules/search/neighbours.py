"""Neighbour search shared by clustering (the kNN graph), OOD scoring and the data builders: L2 normalisation
in bounded chunks, exact or IVF faiss indexes over cosine similarity, and recall against exact search.

Embeddings may arrive memory-mapped (float16 on disk): they are normalised chunk by chunk into the index, so
the index's own float32 (or float16) store is the only full copy. On GPUs the index is sharded over every
visible GPU with float16 storage (each holds 1/n of the rows) instead of being replicated on each one.

Index kinds (`knn.index`):
- `exact`: IndexFlatIP, brute force, ~2 N² d FLOPs for a whole graph.
- `ivf`: `nlist` k-means cells trained on a sample, `nprobe` of them visited per query. On the CPU this is
  `cell_search.CellIndex` (exact products inside the probed cells, blocked into GEMMs: 67-69% of the GEMM peak
  at 2M rows against faiss's ~20%, benchmarks.scale); on GPUs faiss's IndexIVFScalarQuantizer (float16 codes).
  Defaults from N: nlist = 4 √N (faiss's guideline 4–16 √N), nprobe = nlist / 128 (≥ 8), so a query compares
  with 1/128 of the rows; nlist / 64 gained nothing in recall on a mixture of 1,000 clusters (`benchmarks.scale`
  sweeps nprobe). How many cells are enough depends on the data:
  every IVF graph measures its recall@k against exact search and warns below 0.9."""

from __future__ import annotations

import logging
import math

import numpy as np

from lightning_modules.core.io import gather_rows
from lightning_modules.core.jobs import on_terminal
from lightning_modules.search.rows import CHUNK_ROWS, ivf_training_rows, l2_normalise, normalised_chunks, without_self

log = logging.getLogger(__name__)

INDEX_KINDS = ("exact", "ivf")


def ivf_settings(n: int, nlist: int | None = None, nprobe: int | None = None) -> tuple[int, int]:
    """(nlist, nprobe) for N points, the defaults derived from N; one-line errors for settings that cannot work."""
    nlist = nlist or max(1, int(round(4 * math.sqrt(n))))
    nprobe = nprobe or min(nlist, max(8, nlist // 128))
    if nlist > n:
        raise ValueError(f"knn.nlist = {nlist} needs at least {nlist} points to train its cells, got {n}; "
                         f"use a smaller knn.nlist or knn.index: exact")
    if not 1 <= nprobe <= nlist:
        raise ValueError(f"knn.nprobe = {nprobe} must lie in 1..knn.nlist ({nlist})")
    return nlist, nprobe


def _use_gpu(use_gpu: bool | str) -> bool:
    import faiss

    return faiss.get_num_gpus() > 0 if use_gpu == "auto" else bool(use_gpu)


def build_index(embeddings: np.ndarray, index: str = "exact", nlist: int | None = None, nprobe: int | None = None,
                use_gpu: bool | str = "auto", seed: int = 0):
    """A cosine (inner product over unit rows) index holding every row of `embeddings`: faiss's, except IVF on the
    CPU, a `cell_search.CellIndex` (same `search` contract through `search()` below)."""
    import faiss

    if index not in INDEX_KINDS:
        raise ValueError(f"knn.index = '{index}'; allowed: {', '.join(INDEX_KINDS)}")
    n, dims = embeddings.shape
    gpu = _use_gpu(use_gpu)
    if index == "ivf" and not gpu:
        from lightning_modules.search.cell_search import CellIndex  # imports torch: only where used

        return CellIndex(*ivf_settings(n, nlist, nprobe), seed=seed).fit(embeddings)
    if index == "exact":
        cpu_index = faiss.IndexFlatIP(dims)
    else:
        nlist, nprobe = ivf_settings(n, nlist, nprobe)
        cpu_index = faiss_ivf(embeddings, nlist, nprobe, seed)
    searchable = cpu_index
    if gpu:
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True        # rows split over the GPUs, not copied to each
        options.useFloat16 = True   # float16 storage: 13M x 768 fits on four 40 GB cards
        searchable = faiss.index_cpu_to_all_gpus(cpu_index, co=options)
        if index == "ivf":
            faiss.GpuParameterSpace().set_index_parameter(searchable, "nprobe", nprobe)
    for _, chunk in normalised_chunks(embeddings):
        searchable.add(chunk)
    return searchable


def faiss_ivf(embeddings: np.ndarray, nlist: int, nprobe: int, seed: int = 0):
    """faiss's IVF over cosine with float16 codes, its cells trained on `embeddings`, no rows added yet."""
    import faiss

    dims = embeddings.shape[1]
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dims), dims, nlist, faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT)
    index.train(l2_normalise(gather_rows(embeddings, ivf_training_rows(len(embeddings), nlist, seed))))
    index.nprobe = nprobe
    return index


def search(index, embeddings: np.ndarray, k: int, chunk_rows: int = CHUNK_ROWS, progress: bool = False):
    """(N, k) similarities and indices of the rows of `embeddings` (normalised chunk by chunk) in `index`."""
    from tqdm.auto import tqdm

    from lightning_modules.search.cell_search import CellIndex  # imports torch: only where used

    if isinstance(index, CellIndex):  # it orders the queries by cell itself
        return index.search(embeddings, k)
    similarities = np.empty((len(embeddings), k), dtype=np.float32)
    indices = np.empty((len(embeddings), k), dtype=np.int64)
    for start, chunk in tqdm(normalised_chunks(embeddings, chunk_rows), desc="search", disable=not progress,
                             total=-(-len(embeddings) // chunk_rows)):
        similarities[start:start + len(chunk)], indices[start:start + len(chunk)] = index.search(chunk, k)
    return similarities, indices


def knn_graph(embeddings: np.ndarray, k: int = 50, query_batch: int = CHUNK_ROWS, use_gpu: bool | str = "auto",
              progress: bool | None = False, index: str = "exact", nlist: int | None = None,
              nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) embeddings -> (N, k) int32 neighbour indices and (N, k) float32 cosine similarities, nearest
    first. A point is never its own neighbour, even when duplicates tie with it (or, with IVF, when the
    search misses it). Queries go by chunks straight into the two outputs: beside the index and the outputs,
    memory holds one chunk's results."""
    n = len(embeddings)
    if not 1 <= k < n:
        raise ValueError(f"knn.k = {k} must be between 1 and the number of samples - 1 ({n - 1})")
    return graph_of_index(build_index(embeddings, index, nlist, nprobe, use_gpu), embeddings, k, query_batch, progress)


def graph_of_index(searchable, embeddings: np.ndarray, k: int, query_batch: int = CHUNK_ROWS,
                   progress: bool | None = False) -> tuple[np.ndarray, np.ndarray]:
    """knn_graph's search, given the index of `embeddings` built by `build_index`."""
    from tqdm.auto import tqdm

    from lightning_modules.search.cell_search import CellIndex  # imports torch: only where used

    n = len(embeddings)
    if isinstance(searchable, CellIndex):  # CPU IVF: the rows of each cell are searched together
        indices, similarities = searchable.graph(k)
    else:
        indices, similarities = np.empty((n, k), dtype=np.int32), np.empty((n, k), dtype=np.float32)
        for start, chunk in tqdm(normalised_chunks(embeddings, query_batch), desc="kNN graph",
                                 disable=not on_terminal(progress), total=-(-n // query_batch)):
            sims, found = searchable.search(chunk, k + 1)
            found, sims = without_self(found, sims, np.arange(start, start + len(chunk)), k)
            indices[start:start + len(chunk)], similarities[start:start + len(chunk)] = found, sims
    short = np.flatnonzero((indices < 0).any(axis=1))
    if len(short):  # IVF: the probed cells held fewer than k other points; search those rows exactly
        log.info("%d rows found fewer than %d neighbours in their probed cells; searched exactly", len(short), k)
        indices[short] = exact_neighbours(embeddings, embeddings[short], k, exclude=short)
        similarities[short] = (l2_normalise(embeddings[short])[:, None, :]
                               * l2_normalise(embeddings[indices[short].ravel()]).reshape(len(short), k, -1)).sum(-1)
    return indices, similarities


def exact_neighbours(embeddings: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None = None,
                     chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """(Q, k) indices of the exact k nearest rows of `embeddings` to each query (cosine), streaming over the
    rows in chunks; `exclude[q]`: a row index query q may not return (itself)."""
    unit_queries = l2_normalise(queries)
    best_sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start, chunk in normalised_chunks(embeddings, chunk_rows):
        sims = unit_queries @ chunk.T
        if exclude is not None:
            own = (exclude >= start) & (exclude < start + len(chunk))
            sims[own, exclude[own] - start] = -np.inf
        if sims.shape[1] > k:  # the chunk's own top k first (linear time), then the merge sorts 2k columns
            top = np.sort(np.argpartition(-sims, k - 1, axis=1)[:, :k], axis=1)
            sims, rows = np.take_along_axis(sims, top, 1), top + start
        else:
            rows = np.broadcast_to(np.arange(start, start + len(chunk)), sims.shape)
        merged_sims, merged_rows = np.hstack([best_sims, sims]), np.hstack([best_rows, rows])
        keep = np.argsort(-merged_sims, axis=1, kind="stable")[:, :k]
        best_sims, best_rows = np.take_along_axis(merged_sims, keep, 1), np.take_along_axis(merged_rows, keep, 1)
    return best_rows


def graph_recall(embeddings: np.ndarray, indices: np.ndarray, n_queries: int = 2000, seed: int = 0) -> float:
    """Recall@k of a kNN graph against exact search on `n_queries` random rows: the mean fraction of each
    row's exact k nearest (self excluded) that the graph holds."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(embeddings), size=min(n_queries, len(embeddings)), replace=False))
    exact = exact_neighbours(embeddings, embeddings[rows], indices.shape[1], exclude=rows)
    found = indices[rows]
    return float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(exact, found)]) / indices.shape[1])
