"""`mahalanobis` and `relative-mahalanobis` (Lee et al. 2018; Ren et al. 2021), and `cluster-mahalanobis`:
the same score with a clustering run's assignments as pseudo-labels (unsupervised yet class-aware).
`mahalanobis-pp` and `relative-mahalanobis-pp` (Mahalanobis++, Müller & Hein 2025): the same scores on
L2-normalised features — training rows before the class statistics, queries before scoring — as the official
mueller-mp/maha-norm `OpenOOD/openood/postprocessors/mdsn_postprocessor.py` and `rmdsn_postprocessor.py` do
(they divide by the norm alone; here NORM_EPS inside it keeps a zero row zero instead of NaN).

Class means and one shared covariance: every sample centred on its class mean, pooled, so that classes
weigh by their size (OpenOOD's `MDSPostprocessor` and `RMDSPostprocessor`: EmpiricalCovariance on the
concatenated class-centred features). Statistics are accumulated in float64 over row chunks, so a
memory-mapped float16 artifact is never copied whole; the pseudo-inverse copes with singular covariances
(constant pixels, more dims than samples), as sklearn's `precision_` (pinvh) does."""

from __future__ import annotations

import numpy as np

from lightning_modules.core.io import gather_rows, release_rows, row_chunks
from lightning_modules.search.rows import NORM_EPS, float_rows
from lightning_modules.ood.base import OODScorer, known_labels

CHUNK_ROWS = 65536
SCORE_CHUNK_ROWS = 8192


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    """float64 rows scaled to unit length in place (Mahalanobis++)."""
    rows /= np.linalg.norm(rows, axis=1, keepdims=True) + NORM_EPS
    return rows


def class_means_and_pooled_covariance(embeddings: np.ndarray, labels: np.ndarray, normalise: bool = False):
    """(N, D), (N,) -> (classes (C,), means (C, D), covariance (D, D)) with
    covariance = 1/N sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T, in one pass over the rows (of the L2-normalised
    rows with `normalise`).

    Shifted data (Chan, Golub & LeVeque 1983): each row is first shifted by one member s_c of its class, then
    sum_i (x_i - mu_c)(x_i - mu_c)^T = sum_i (x_i - s_c)(x_i - s_c)^T - n_c d_c d_c^T with d_c = mu_c - s_c.
    The correction is of the within-class size, so nothing cancels (unlike sum x x^T - n mu mu^T), and a
    constant feature stays exactly 0, which keeps the pseudo-inverse's null space. One pass instead of two
    (means, then centred products) halves the reads and conversions of a memory-mapped artifact."""
    import torch

    classes, first_rows, class_index = np.unique(labels, return_index=True, return_inverse=True)
    first = float_rows(gather_rows(embeddings, first_rows), np.float64)
    shifts = torch.from_numpy(_unit_rows(first) if normalise else first)
    members = torch.from_numpy(class_index.reshape(-1))
    offset_sums = torch.zeros_like(shifts)
    scatter = np.zeros((embeddings.shape[1],) * 2)
    shifted_buffer = np.empty((min(CHUNK_ROWS, len(embeddings)), embeddings.shape[1]))
    shift_buffer = torch.empty(shifted_buffer.shape, dtype=torch.float64)
    for rows in row_chunks(len(embeddings), CHUNK_ROWS):
        count = rows.stop - rows.start
        shifted = float_rows(embeddings[rows], np.float64, out=shifted_buffer[:count])
        release_rows(embeddings, rows)
        if normalise:
            _unit_rows(shifted)
        torch.index_select(shifts, 0, members[rows], out=shift_buffer[:count])
        torch.from_numpy(shifted).sub_(shift_buffer[:count])
        offset_sums.index_add_(0, members[rows], torch.from_numpy(shifted))
        scatter += shifted.T @ shifted  # numpy runs a.T @ a as one symmetric rank-k update (syrk): half a GEMM
    counts = np.bincount(class_index.reshape(-1), minlength=len(classes))
    offsets = offset_sums.numpy() / counts[:, None]
    scatter -= (offsets * counts[:, None]).T @ offsets
    return classes, shifts.numpy() + offsets, scatter / len(embeddings)


def _precision(covariance: np.ndarray) -> np.ndarray:
    return np.linalg.pinv(covariance, hermitian=True)


def _nearest_squared_distances(x: np.ndarray, means: np.ndarray, precision: np.ndarray,
                               normalise: bool = False) -> np.ndarray:
    """(N, D), (C, D) -> (N,) min_c of the squared Mahalanobis distance |x|²_P - 2 x P mu_c + |mu_c|²_P, by
    chunks of rows, the three terms summed by one GEMM: [x P, |x|²_P, 1] @ [-2 mu^T; 1; |mu|²_P]. Only the
    minimum is kept, so 1M queries against 1,000 classes need no (N, C) array (8 GB in float64)."""
    dims, chunk_rows = x.shape[1], min(SCORE_CHUNK_ROWS, len(x))
    class_terms = np.vstack([-2 * means.T, np.ones((1, len(means))), ((means @ precision) * means).sum(1)[None]])
    query_terms = np.empty((chunk_rows, dims + 2))
    query_terms[:, dims + 1] = 1
    chunk_buffer, block_buffer = np.empty((chunk_rows, dims)), np.empty((chunk_rows, len(means)))
    nearest = np.empty(len(x))
    for rows in row_chunks(len(x), SCORE_CHUNK_ROWS):
        count = rows.stop - rows.start
        chunk = float_rows(x[rows], np.float64, out=chunk_buffer[:count])
        if normalise:
            _unit_rows(chunk)
        projected = np.matmul(chunk, precision, out=query_terms[:count, :dims])
        query_terms[:count, dims] = np.einsum("ij,ij->i", projected, chunk)
        np.matmul(query_terms[:count], class_terms, out=block_buffer[:count]).min(axis=1, out=nearest[rows])
    return np.clip(nearest, 0, None, out=nearest)


class Mahalanobis(OODScorer):
    """score(x) = -min_c (x - mu_c)^T Sigma^+ (x - mu_c), Sigma the pooled class-centred covariance; with
    `normalise` (Mahalanobis++), x and the training rows L2-normalised first."""

    name = "mahalanobis"

    def __init__(self, normalise: bool = False):
        self.normalise = normalise

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "Mahalanobis":
        labels = known_labels(labels, self.name)
        _, self.means_, covariance = class_means_and_pooled_covariance(embeddings, labels, self.normalise)
        self.precision_ = _precision(covariance)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return -_nearest_squared_distances(x, self.means_, self.precision_, self.normalise)


class RelativeMahalanobis(Mahalanobis):
    """score(x) = -min_c [MD_c(x) - MD_0(x)], MD_0 the distance to the background Gaussian (mean and
    covariance of all ID training data, one class)."""

    name = "relative-mahalanobis"

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "RelativeMahalanobis":
        super().fit(embeddings, labels)
        _, self.background_mean_, covariance = class_means_and_pooled_covariance(
            embeddings, np.zeros(len(embeddings), dtype=np.int64), self.normalise)
        self.background_precision_ = _precision(covariance)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        background = _nearest_squared_distances(x, self.background_mean_, self.background_precision_, self.normalise)
        return super().score(x) + background  # min_c [MD_c - MD_0] = min_c MD_c - MD_0
