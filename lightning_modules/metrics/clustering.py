"""Clustering metrics: pure functions of (labels_true, labels_pred) arrays.

Every metric here uses the ground-truth labels: they evaluate a clustering and never choose one.
Samples labelled -1 (unknown) are left out of every label-based metric.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm
from sklearn.metrics.cluster import contingency_matrix

LABEL_METRICS = ("acc", "acc_majority", "nmi", "ari", "ami")


def _labelled(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    labels_true = np.asarray(labels_true)
    labels_pred = np.asarray(labels_pred)
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1:
        raise ValueError(f"labels of shape {labels_true.shape} and assignments of shape {labels_pred.shape} differ")
    known = labels_true != -1
    return labels_true[known], labels_pred[known]


def hungarian_accuracy(labels_true, labels_pred, n_clusters: int | None = None) -> float:
    """Accuracy under the best one-to-one cluster->class map (scipy's linear_sum_assignment).

    Defined for K <= number of classes (K = `n_clusters`, else the number of distinct assignments);
    NaN otherwise, where a one-to-one map would leave clusters unmatched: use `majority_accuracy` there.
    """
    labels_true, labels_pred = _labelled(labels_true, labels_pred)
    n_classes = len(np.unique(labels_true))
    n_clusters = len(np.unique(labels_pred)) if n_clusters is None else n_clusters
    if n_clusters > n_classes or len(labels_true) == 0:
        return float("nan")
    table = contingency_matrix(labels_true, labels_pred)  # classes x clusters
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels_true))


def majority_accuracy(labels_true, labels_pred) -> float:
    """Accuracy when each cluster is labelled with its majority class (the overclustering metric)."""
    labels_true, labels_pred = _labelled(labels_true, labels_pred)
    if len(labels_true) == 0:
        return float("nan")
    table = contingency_matrix(labels_true, labels_pred)
    return float(table.max(axis=0).sum() / len(labels_true))


def clustering_metrics(labels_true, labels_pred, n_clusters: int | None = None) -> dict[str, float]:
    """acc, acc_majority, nmi, ari, ami (label-based) and clusters_used (label-free)."""
    clusters_used = int(len(np.unique(np.asarray(labels_pred))))
    known_true, known_pred = _labelled(labels_true, labels_pred)
    if len(known_true) == 0:
        scores = {name: float("nan") for name in LABEL_METRICS}
    else:
        scores = {
            "acc": hungarian_accuracy(known_true, known_pred, n_clusters),
            "acc_majority": majority_accuracy(known_true, known_pred),
            "nmi": float(skm.normalized_mutual_info_score(known_true, known_pred)),
            "ari": float(skm.adjusted_rand_score(known_true, known_pred)),
            "ami": float(skm.adjusted_mutual_info_score(known_true, known_pred)),
        }
    return {**scores, "clusters_used": clusters_used}


# Label-free diagnostics: usable for choosing settings, unlike everything above.

def effective_clusters(labels_pred) -> float:
    """exp(entropy of the cluster sizes): K for perfectly balanced clusters, 1 for a single cluster."""
    _, sizes = np.unique(np.asarray(labels_pred), return_counts=True)
    shares = sizes / sizes.sum()
    return float(np.exp(-(shares * np.log(shares)).sum()))


def knn_agreement(labels_pred, neighbours) -> float:
    """Fraction of (sample, neighbour) pairs of the kNN graph that share a cluster."""
    labels_pred = np.asarray(labels_pred)
    return float((labels_pred[np.asarray(neighbours)] == labels_pred[:, None]).mean())


# Multi-class capture: a sample's two most likely clusters (for k-means, its two nearest centroids).

def top2_accuracy(labels_true, top2, n_clusters: int | None = None) -> float:
    """A sample counts as correct if either of its two most likely clusters maps to its class under the
    Hungarian map of the top-1 assignments. NaN where that map is undefined (K > classes)."""
    labels_true, top2 = np.asarray(labels_true), np.asarray(top2)
    known = labels_true != -1
    labels_true, top2 = labels_true[known], top2[known]
    classes, clusters = np.unique(labels_true), np.unique(top2[:, 0])
    n_clusters = len(clusters) if n_clusters is None else n_clusters
    if n_clusters > len(classes) or len(labels_true) == 0:
        return float("nan")
    table = contingency_matrix(labels_true, top2[:, 0])
    rows, cols = linear_sum_assignment(table, maximize=True)
    class_of = {clusters[c]: classes[r] for r, c in zip(rows, cols)}
    mapped = np.vectorize(lambda c: class_of.get(c, -2), otypes=[np.int64])(top2)
    return float(((mapped[:, 0] == labels_true) | (mapped[:, 1] == labels_true)).mean())


def second_cluster_coarse_accuracy(coarse_true, top2) -> float:
    """How often the second most likely cluster's coarse class is the sample's coarse class, each cluster
    labelled with the majority coarse class of its top-1 members (clusters that are nobody's top-1 count
    as wrong). NaN without coarse labels."""
    if coarse_true is None:
        return float("nan")
    coarse_true, top2 = np.asarray(coarse_true), np.asarray(top2)
    known = coarse_true != -1
    coarse_true, top2 = coarse_true[known], top2[known]
    if len(coarse_true) == 0:
        return float("nan")
    majority = {}
    for cluster in np.unique(top2[:, 0]):
        values, counts = np.unique(coarse_true[top2[:, 0] == cluster], return_counts=True)
        majority[cluster] = values[np.argmax(counts)]
    second = np.array([majority.get(c, -2) for c in top2[:, 1]])
    return float((second == coarse_true).mean())
