"""What the figures show, worked out by hand: the most confident members, the Hungarian order of the cluster x class
matrix (uneven and tied cases), the shared colours of the two map panels, the OOD failure cases, the map's sample."""

import numpy as np

from lightning_modules.clustering.figures import (confidence, confident_members, draw_cluster_figures,
                                                  hungarian_order, matched_colours)
from lightning_modules.embeddings.maps import embedding_map, map_rows
from lightning_modules.ood.failures import failure_rows


def test_confident_members_are_the_largest_clusters_surest_rows_with_ties_by_row():
    assignments = np.array([0, 1, 1, 1, 0, 2, 1])
    score = np.array([0.5, 0.9, 0.2, 0.9, 0.7, 0.1, 0.95])
    members = confident_members(assignments, score, per_cluster=2, max_clusters=2)
    assert list(members) == [1, 0]  # the two largest clusters, largest first
    assert members[1].tolist() == [6, 1] and members[0].tolist() == [4, 0]  # 0.95, then the tie 0.9 at rows 1 and 3


def test_confidence_is_the_head_probability_or_closeness_to_the_centroid(tmp_path):
    x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [13.0, 14.0]])
    assignments = np.array([0, 0, 1, 1])
    score, kind = confidence(tmp_path, x, assignments)
    assert kind == "distance to the centroid"
    np.testing.assert_allclose(score, [-1.0, -1.0, -2.5, -2.5])  # centroids (1, 0) and (11.5, 12)
    np.save(tmp_path / "probs.npy", np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]], np.float32))
    score, kind = confidence(tmp_path, x, assignments)
    assert kind == "head probability" and np.allclose(score, [0.9, 0.6, 0.7, 0.8])


def test_hungarian_order_puts_each_class_match_first_and_the_rest_by_majority():
    # 3 clusters, 2 classes: cluster 2 is class 0's match, cluster 0 class 1's; cluster 1 (mostly class 0) is extra
    assignments = np.array([2, 2, 2, 1, 1, 0, 0, 0, 0, -0])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, -1])  # the last sample is unlabelled: left out
    counts, order = hungarian_order(assignments, labels)
    assert order.tolist() == [2, 0, 1]
    assert counts.tolist() == [[3, 0], [0, 4], [1, 1]]
    colours = matched_colours(assignments, labels)
    assert colours.tolist() == [0, 0, 0, 2, 2, 1, 1, 1, 1, 1]  # matched clusters take their class's colour


def test_fewer_clusters_than_classes_leave_classes_unmatched():
    assignments = np.array([0, 0, 1, 1, 1])
    labels = np.array([2, 2, 0, 0, 1])
    counts, order = hungarian_order(assignments, labels)
    assert order.tolist() == [1, 0] and counts.tolist() == [[2, 1, 0], [0, 0, 2]]


def test_failure_cases_are_the_lowest_id_and_highest_ood_scores_ties_by_row():
    id_rows, ood_rows = failure_rows(np.array([0.9, 0.1, 0.5, 0.1]), np.array([0.2, 0.8, 0.8, 0.1]), n=2)
    assert id_rows.tolist() == [1, 3] and ood_rows.tolist() == [1, 2]


def test_the_map_samples_above_its_limit_and_keeps_neighbours_together():
    assert map_rows(5, 10).tolist() == [0, 1, 2, 3, 4]
    rows = map_rows(1000, 100, seed=0)
    assert len(rows) == 100 and (np.diff(rows) > 0).all()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (60, 8)), rng.normal(12, 1, (60, 8))]).astype(np.float32)
    y = embedding_map(x, "opentsne")
    assert y.shape == (120, 2)
    within = np.linalg.norm(y[:60].mean(0) - y[:60], axis=1).mean()
    assert np.linalg.norm(y[:60].mean(0) - y[60:].mean(0)) > 3 * within  # two blobs stay two blobs


def test_features_without_images_get_row_ids_not_a_gallery(tmp_path):
    rng = np.random.default_rng(0)
    embeddings = tmp_path / "all.npy"
    np.save(embeddings, rng.normal(size=(40, 4)).astype(np.float32))
    np.save(tmp_path / "all.labels.npy", np.repeat([0, 1], 20))
    run = tmp_path / "run"
    run.mkdir()
    np.save(run / "assignments.npy", np.repeat([1, 0], 20))
    record = draw_cluster_figures(run, embeddings, tmp_path / "figures", dataset=None)
    assert record["figures"] == ["matrix.png"]  # labelled, no images, no map
    first = record["clusters"][0]  # equal sizes: cluster 0 first, its rows 20-39 of class 1
    assert [c["size"] for c in record["clusters"]] == [20, 20] and first["cluster"] == 0 and first["labels"] == [1] * 8
