import itertools

import numpy as np
import pytest
from scipy.stats import entropy
from sklearn import metrics as skm

from lightning_modules.metrics.clustering import clustering_metrics, hungarian_accuracy, majority_accuracy


def brute_force_accuracy(labels_true, labels_pred):
    """Best one-to-one cluster->class map by trying every injection (small K only)."""
    classes, clusters = np.unique(labels_true), np.unique(labels_pred)
    best = 0
    for image in itertools.permutations(classes, len(clusters)):
        mapping = dict(zip(clusters, image))
        best = max(best, sum(mapping[c] == t for c, t in zip(labels_pred, labels_true)))
    return best / len(labels_true)


def nmi_by_formula(labels_true, labels_pred):
    table = np.array([[np.sum((labels_true == t) & (labels_pred == c)) for c in np.unique(labels_pred)]
                      for t in np.unique(labels_true)], dtype=float)
    joint = table / table.sum()
    pt, pc = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mutual_information = np.sum(joint[nz] * np.log(joint[nz] / np.outer(pt, pc)[nz]))
    return mutual_information / ((entropy(pt) + entropy(pc)) / 2)


def test_hand_worked_example():
    y = [0, 0, 0, 1, 1, 2]
    c = [1, 1, 0, 0, 0, 2]
    # classes->clusters: 0->1 (2 right), 1->0 (2), 2->2 (1): 5 of 6
    assert hungarian_accuracy(y, c) == pytest.approx(5 / 6)
    # cluster 0 holds {class 0: 1, class 1: 2}, cluster 1 {0: 2}, cluster 2 {2: 1}: 2 + 2 + 1
    assert majority_accuracy(y, c) == pytest.approx(5 / 6)


def test_fewer_clusters_than_classes():
    y = [0, 0, 1, 1, 2, 2]
    c = [0, 0, 0, 0, 1, 1]
    assert hungarian_accuracy(y, c) == pytest.approx(4 / 6)
    assert majority_accuracy(y, c) == pytest.approx(4 / 6)


def test_more_clusters_than_classes_is_nan_for_hungarian_only():
    y = [0, 0, 1, 1]
    c = [0, 1, 2, 3]
    assert np.isnan(hungarian_accuracy(y, c))
    assert majority_accuracy(y, c) == 1.0
    # K is the requested number of clusters even when fewer are used
    assert np.isnan(hungarian_accuracy([0, 1, 0, 1], [0, 1, 0, 1], n_clusters=3))


def test_labels_need_not_be_zero_based():
    y = [10, 10, 20, 20, 30]
    c = [5, 5, 7, 7, 9]
    scores = clustering_metrics(y, c)
    assert scores["acc"] == 1.0 and scores["nmi"] == pytest.approx(1.0) and scores["ari"] == pytest.approx(1.0)
    assert scores["clusters_used"] == 3


def test_unknown_labels_are_left_out():
    scores = clustering_metrics([0, 0, 1, 1, -1, -1], [0, 0, 1, 1, 0, 1])
    assert scores["acc"] == 1.0
    assert scores["clusters_used"] == 2


@pytest.mark.parametrize("n_classes,n_clusters", [(4, 4), (5, 3), (3, 5), (6, 6)])
def test_against_independent_references(n_classes, n_clusters):
    rng = np.random.default_rng(n_classes * 10 + n_clusters)
    y = rng.choice([3, 7, 11, 19, 23, 42][:n_classes], size=60)  # not 0..C-1
    c = rng.integers(0, n_clusters, size=60)
    scores = clustering_metrics(y, c, n_clusters=n_clusters)
    if n_clusters <= n_classes:
        assert scores["acc"] == pytest.approx(brute_force_accuracy(y, c))
    else:
        assert np.isnan(scores["acc"])
    majority = sum(np.bincount(np.searchsorted(np.unique(y), y[c == k])).max() for k in np.unique(c)) / len(y)
    assert scores["acc_majority"] == pytest.approx(majority)
    assert scores["nmi"] == pytest.approx(nmi_by_formula(y, c))
    assert scores["ari"] == pytest.approx(skm.adjusted_rand_score(y, c))
    assert scores["ami"] == pytest.approx(skm.adjusted_mutual_info_score(y, c))
    assert scores["clusters_used"] == len(np.unique(c))


def test_invariant_to_renaming_clusters():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 100)
    c = rng.integers(0, 5, 100)
    renamed = np.array([4, 2, 0, 3, 1])[c] + 100
    assert clustering_metrics(y, c) == pytest.approx(clustering_metrics(y, renamed))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        clustering_metrics([0, 1, 2], [0, 1])


def test_label_free_diagnostics_by_hand():
    from lightning_modules.metrics.clustering import effective_clusters, knn_agreement

    assert effective_clusters([0, 0, 1, 1]) == pytest.approx(2.0)
    assert effective_clusters([0, 0, 0, 0]) == pytest.approx(1.0)
    # sizes 3 and 1: exp(-(0.75 ln 0.75 + 0.25 ln 0.25))
    assert effective_clusters([5, 5, 5, 9]) == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    neighbours = np.array([[1, 2], [0, 2], [3, 0], [2, 1]])
    # pairs sharing a cluster: (0,1) yes (0,2) no (1,0) yes (1,2) no (2,3) yes (2,0) no (3,2) yes (3,1) no
    assert knn_agreement([0, 0, 1, 1], neighbours) == pytest.approx(4 / 8)


def test_top2_accuracy_by_hand():
    from lightning_modules.metrics.clustering import top2_accuracy

    y = np.array([0, 0, 1, 1, 2, 2])
    top2 = np.array([[0, 1], [0, 2], [1, 0], [2, 1], [2, 0], [2, 1]])
    # Hungarian map of the top-1 column: cluster 0 -> class 0, 1 -> 1, 2 -> 2
    # sample 3 (class 1) has top-1 cluster 2 (class 2) but top-2 cluster 1 (class 1): counted correct
    assert top2_accuracy(y, top2) == pytest.approx(6 / 6)
    assert top2_accuracy(y, top2[:, [0, 0]]) == pytest.approx(5 / 6)  # top-1 only
    assert np.isnan(top2_accuracy([0, 0, 1, 1], [[0, 1], [1, 0], [2, 0], [3, 0]]))  # K > classes


def test_second_cluster_coarse_accuracy_by_hand():
    from lightning_modules.metrics.clustering import second_cluster_coarse_accuracy

    coarse = np.array([0, 0, 0, 1, 1])
    top2 = np.array([[0, 1], [1, 0], [1, 2], [2, 1], [2, 0]])
    # majority coarse class of top-1 members: cluster 0 -> 0, cluster 1 -> 0, cluster 2 -> 1
    # second clusters 1, 0, 2, 1, 0 -> coarse 0, 0, 1, 0, 0 against 0, 0, 0, 1, 1: 2 of 5
    assert second_cluster_coarse_accuracy(coarse, top2) == pytest.approx(2 / 5)
    assert np.isnan(second_cluster_coarse_accuracy(None, top2))
