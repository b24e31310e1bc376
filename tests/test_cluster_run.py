"""One clustering run as the workflow runs it: artifacts, label-free diagnostics, bad inputs."""

import json

import numpy as np
import pytest

from lightning_modules.clustering.bound import upper_cluster_bound
from lightning_modules.clustering.knn import build_knn_graph
from lightning_modules.clustering.run import cluster_embeddings
from lightning_modules.embeddings.artifact import write_embeddings


@pytest.fixture
def artifacts(tmp_path, digits_pixels):
    x, y = digits_pixels
    write_embeddings(tmp_path / "emb", "all", x, y, {})
    build_knn_graph(tmp_path / "emb", "all", 20, tmp_path / "knn")
    return tmp_path


def test_kmeans_run_writes_assignments_and_metrics(artifacts):
    record = cluster_embeddings(artifacts / "emb", "all", "kmeans", {"n_init": 2}, k=10, seed=0,
                                out_dir=artifacts / "run", knn_dir=artifacts / "knn", graph_k=20)
    assignments = np.load(artifacts / "run" / "assignments.npy")
    assert assignments.dtype == np.int32 and assignments.shape == (1797,)
    on_disk = json.loads((artifacts / "run" / "metrics.json").read_text())
    assert on_disk["acc"] == pytest.approx(record["acc"]) and record["acc"] > 0.7
    assert 0.5 < record["knn_agreement"] <= 1 and 5 < record["effective_clusters"] <= 10
    assert "acc" in record["label_metrics"] and "knn_agreement" not in record["label_metrics"]
    assert not (artifacts / "run" / "probs.npy").exists()  # hard assignments only


def test_head_run_writes_probabilities_and_the_selected_head(artifacts):
    params = {"epochs": 1, "batch_size": 128, "n_heads": 2, "hidden_dim": 16, "bottleneck_dim": 8, "progress": False}
    record = cluster_embeddings(artifacts / "emb", "all", "temi", params, k=10, seed=0, out_dir=artifacts / "run",
                                knn_dir=artifacts / "knn", graph_k=20)
    probs = np.load(artifacts / "run" / "probs.npy")
    assert probs.dtype == np.float16 and probs.shape == (1797, 10)
    assert record["selected_head"] in (0, 1) and "labels not used" in record["head_selection"]


def test_graph_of_other_embeddings_stops_the_run_before_training(artifacts, digits_pixels):
    x, y = digits_pixels
    write_embeddings(artifacts / "emb", "all", x[::-1].copy(), y[::-1].copy(), {})
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        cluster_embeddings(artifacts / "emb", "all", "temi", {}, k=10, seed=0, out_dir=artifacts / "run",
                           knn_dir=artifacts / "knn", graph_k=20)
    assert not (artifacts / "run").exists()


def test_nan_embeddings_stop_the_run_before_training(artifacts):
    embeddings = np.load(artifacts / "emb" / "all.npy")
    embeddings[3, 5] = np.nan
    np.save(artifacts / "emb" / "all.npy", embeddings)  # a corrupted artifact, bypassing the writer's check
    with pytest.raises(ValueError, match="1 rows contain NaN or inf"):
        cluster_embeddings(artifacts / "emb", "all", "scan", {}, k=10, seed=0, out_dir=artifacts / "run",
                           knn_dir=artifacts / "knn", graph_k=20)
    assert not (artifacts / "run").exists()


def test_k_larger_than_the_data_stops_the_run(artifacts):
    with pytest.raises(ValueError, match="K=5000"):
        cluster_embeddings(artifacts / "emb", "all", "kmeans", {}, k=5000, seed=0, out_dir=artifacts / "run")


def test_upper_bound_counts_used_clusters(artifacts):
    params = {"epochs": 1, "batch_size": 256, "n_heads": 2, "hidden_dim": 16, "bottleneck_dim": 8, "progress": False}
    result = upper_cluster_bound(artifacts / "emb", "all", artifacts / "knn", 20, artifacts / "bound.json", k=100,
                                 **params)
    assert result["k_trained"] == 100 and result["beta"] == 1.0
    assert 1 <= result["bound"] == result["clusters_used"] <= 100
    assert 1 <= result["effective_clusters"] <= result["clusters_used"]
    assert json.loads((artifacts / "bound.json").read_text())["bound"] == result["bound"]
