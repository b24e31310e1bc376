"""`mahalanobis` and `relative-mahalanobis` (Lee et al. 2018; Ren et al. 2021), and `cluster-mahalanobis`:
the same score with a clustering run's assignments as pseudo-labels (unsupervised yet class-aware).

Class means and one shared covariance: every sample centred on its class mean, pooled, so that classes
weigh by their size (OpenOOD's `MDSPostprocessor` and `RMDSPostprocessor`: EmpiricalCovariance on the
concatenated class-centred features). Statistics are accumulated in float64 over row chunks, so a
memory-mapped float16 artifact is never copied whole; the pseudo-inverse copes with singular covariances
(constant pixels, more dims than samples), as sklearn's `precision_` (pinvh) does."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from lightning_modules.io import release_rows, row_chunks
from lightning_modules.neighbours import float_rows
from lightning_modules.ood.base import OODScorer, known_labels

CHUNK_ROWS = 65536


def class_means_and_pooled_covariance(embeddings: np.ndarray, labels: np.ndarray):
    """(N, D), (N,) -> (classes (C,), means (C, D), covariance (D, D)) with
    covariance = 1/N sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T."""
    classes, class_index = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(classes), embeddings.shape[1]))
    for rows in row_chunks(len(embeddings), CHUNK_ROWS):  # a sparse one-hot product: np.add.at is ~30x slower
        members = class_index[rows]
        one_hot = csr_matrix((np.ones(len(members)), (members, np.arange(len(members)))),
                             shape=(len(classes), len(members)))
        sums += one_hot @ float_rows(embeddings[rows], np.float64)
        release_rows(embeddings, rows)
    means = sums / np.bincount(class_index, minlength=len(classes))[:, None]
    scatter = np.zeros((embeddings.shape[1],) * 2)
    for rows in row_chunks(len(embeddings), CHUNK_ROWS):
        centred = float_rows(embeddings[rows], np.float64)
        centred -= means[class_index[rows]]
        release_rows(embeddings, rows)
        scatter += centred.T @ centred  # numpy runs a.T @ a as one symmetric rank-k update (syrk): half a GEMM
    return classes, means, scatter / len(embeddings)


def _precision(covariance: np.ndarray) -> np.ndarray:
    return np.linalg.pinv(covariance, hermitian=True)


def _squared_distances(x: np.ndarray, means: np.ndarray, precision: np.ndarray,
                       chunk_rows: int = 8192) -> np.ndarray:
    """(N, D), (C, D) -> (N, C) squared Mahalanobis distances |x|²_P - 2 x P mu + |mu|²_P, by chunks of rows
    computed in place in the output (whole-array temporaries of (N, C) float64 cost 4x the time)."""
    projected_means = means @ precision
    mean_terms = (projected_means * means).sum(1)
    distances = np.empty((len(x), len(means)))
    for rows in row_chunks(len(x), chunk_rows):
        chunk = float_rows(x[rows], np.float64)
        projected = chunk @ precision
        block = np.matmul(projected, means.T, out=distances[rows])
        block *= -2
        block += (projected * chunk).sum(1)[:, None]
        block += mean_terms[None, :]
        np.clip(block, 0, None, out=block)
    return distances


class Mahalanobis(OODScorer):
    """score(x) = -min_c (x - mu_c)^T Sigma^+ (x - mu_c), Sigma the pooled class-centred covariance."""

    name = "mahalanobis"

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "Mahalanobis":
        labels = known_labels(labels, self.name)
        _, self.means_, covariance = class_means_and_pooled_covariance(embeddings, labels)
        self.precision_ = _precision(covariance)
        return self

    def class_distances(self, x: np.ndarray) -> np.ndarray:
        return _squared_distances(x, self.means_, self.precision_)

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.class_distances(x).min(axis=1)


class RelativeMahalanobis(Mahalanobis):
    """score(x) = -min_c [MD_c(x) - MD_0(x)], MD_0 the distance to the background Gaussian (mean and
    covariance of all ID training data, one class)."""

    name = "relative-mahalanobis"

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "RelativeMahalanobis":
        super().fit(embeddings, labels)
        _, self.background_mean_, covariance = class_means_and_pooled_covariance(
            embeddings, np.zeros(len(embeddings), dtype=np.int64))
        self.background_precision_ = _precision(covariance)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        background = _squared_distances(x, self.background_mean_, self.background_precision_)
        return -(self.class_distances(x) - background).min(axis=1)
