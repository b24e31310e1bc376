"""`mahalanobis` and `relative-mahalanobis` (Lee et al. 2018; Ren et al. 2021), and `cluster-mahalanobis`:
the same score with a clustering run's assignments as pseudo-labels (unsupervised yet class-aware).

Class means and a shared covariance (the mean of the per-class maximum-likelihood covariances), in float64;
the pseudo-inverse copes with singular covariances (constant pixels, more dims than samples)."""

from __future__ import annotations

import numpy as np

from lightning_modules.ood.base import OODScorer, known_labels


def _precision(covariance: np.ndarray) -> np.ndarray:
    return np.linalg.pinv(covariance, hermitian=True)


def _squared_distances(x: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(N, D), (C, D) -> (N, C) squared Mahalanobis distances."""
    x = np.asarray(x, dtype=np.float64)
    projected_x, projected_means = x @ precision, means @ precision
    return ((projected_x * x).sum(1)[:, None] - 2 * projected_x @ means.T
            + (projected_means * means).sum(1)[None, :]).clip(min=0)


class Mahalanobis(OODScorer):
    name = "mahalanobis"

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "Mahalanobis":
        x = np.asarray(embeddings, dtype=np.float64)
        labels = known_labels(labels, self.name)
        classes = np.unique(labels)
        self.means_ = np.stack([x[labels == c].mean(0) for c in classes])
        covariance = np.mean([np.cov(x[labels == c], rowvar=False, bias=True).reshape(x.shape[1], x.shape[1])
                              for c in classes], axis=0)
        self.precision_ = _precision(covariance)
        return self

    def class_distances(self, x: np.ndarray) -> np.ndarray:
        return _squared_distances(x, self.means_, self.precision_)

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.class_distances(x).min(axis=1)


class RelativeMahalanobis(Mahalanobis):
    """Minus the distance to the background Gaussian (mean and covariance of all ID training data)."""

    name = "relative-mahalanobis"

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "RelativeMahalanobis":
        super().fit(embeddings, labels)
        x = np.asarray(embeddings, dtype=np.float64)
        self.background_mean_ = x.mean(0, keepdims=True)
        self.background_precision_ = _precision(np.cov(x, rowvar=False, bias=True).reshape(x.shape[1], x.shape[1]))
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        background = _squared_distances(x, self.background_mean_, self.background_precision_)
        return -(self.class_distances(x) - background).min(axis=1)
