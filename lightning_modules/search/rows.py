"""Rows as the searches want them, below both search modules (neighbours, cell_search): float32 copies, unit
rows in bounded chunks, the IVF training sample, a query's own row dropped from its results."""

from __future__ import annotations

import warnings

import numpy as np

from lightning_modules.core.io import release_rows

CHUNK_ROWS = 65536
TRAIN_POINTS_PER_CELL = 64  # IVF training sample per cell (faiss warns below 39)
NORM_EPS = 1e-12  # inside the division by a row's norm: zero rows stay zero


def float_rows(x: np.ndarray, dtype=np.float32, out: np.ndarray | None = None) -> np.ndarray:
    """A float32 (or `dtype`) copy of `x` (any numeric dtype, memory-mapped or not), written into `out` when
    given (a buffer reused across chunks: a fresh 100 MB array per chunk costs its page faults again). torch
    converts float16 — the artifacts' dtype — about 8x faster than numpy's astype (0.5 against 4 ns per value
    on these machines)."""
    import torch  # here, not at the top: the reporting environment imports this module without torch

    x = np.ascontiguousarray(x)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")  # a read-only memory map: only read here
        source = torch.from_numpy(x)
        if out is None:
            return source.to(getattr(torch, np.dtype(dtype).name), copy=True).numpy()
        torch.from_numpy(out).copy_(source)
        return out


def l2_normalise(x: np.ndarray, eps: float = NORM_EPS) -> np.ndarray:
    """Rows scaled to unit length, as float32 (eps inside the division: zero rows stay zero)."""
    import torch

    rows = torch.from_numpy(float_rows(x))
    return rows.div_(torch.linalg.vector_norm(rows, dim=-1, keepdim=True).add_(eps)).numpy()


def normalised_chunks(embeddings: np.ndarray, chunk_rows: int = CHUNK_ROWS):
    """Yield (start, float32 unit rows) over `embeddings` (memory-mapped or not) in bounded chunks; a memory
    map's pages are released once their chunk is converted."""
    for start in range(0, len(embeddings), chunk_rows):
        rows = slice(start, start + chunk_rows)
        chunk = l2_normalise(embeddings[rows])
        release_rows(embeddings, rows)
        yield start, chunk


def ivf_training_rows(n: int, nlist: int, seed: int = 0) -> np.ndarray:
    """The sorted rows an IVF's cells are trained on: TRAIN_POINTS_PER_CELL per cell (all when fewer)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, TRAIN_POINTS_PER_CELL * nlist), replace=False))


def without_self(found: np.ndarray, sims: np.ndarray, rows: np.ndarray, k: int):
    """Drop each query's own row from its k + 1 results (or, if absent, the farthest): (Q, k) each."""
    is_self = found == rows[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]  # self (True) moves to the end
    return np.take_along_axis(found, order, axis=1), np.take_along_axis(sims, order, axis=1)
