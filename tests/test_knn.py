import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from lightning_modules.clustering.knn import build_knn_graph, knn_graph, l2_normalise, read_knn_graph
from lightning_modules.embeddings.artifact import write_embeddings


def test_matches_scikit_learn_exact_cosine_neighbours(digits_pixels):
    x, _ = digits_pixels
    indices, similarities = knn_graph(x, k=10, query_batch=500)  # several query batches
    reference = NearestNeighbors(n_neighbors=11, metric="cosine", algorithm="brute").fit(x)
    distances, expected = reference.kneighbors(x)
    np.testing.assert_allclose(similarities, 1 - distances[:, 1:], atol=1e-5)
    # identical similarities may come in either order: compare the sets where there are no ties
    no_ties = np.all(np.diff(distances, axis=1) > 1e-6, axis=1)
    assert no_ties.mean() > 0.9
    np.testing.assert_array_equal(np.sort(indices[no_ties], 1), np.sort(expected[no_ties, 1:], 1))
    assert indices.dtype == np.int32


def test_self_is_excluded_even_among_duplicates():
    x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # every point has 3 exact duplicates
    indices, similarities = knn_graph(x, k=3)
    assert not (indices == np.arange(12)[:, None]).any()
    np.testing.assert_allclose(similarities, 1.0, atol=1e-6)
    assert (indices // 4 == np.arange(12)[:, None] // 4).all()


def test_zero_vectors_do_not_produce_nan():
    assert np.isfinite(l2_normalise(np.zeros((2, 3)))).all()


@pytest.mark.parametrize("k", [0, 5])
def test_k_must_leave_a_neighbour(k):
    with pytest.raises(ValueError, match="knn.k"):
        knn_graph(np.random.rand(5, 2).astype(np.float32), k=k)


def test_graph_from_other_embeddings_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    first, second = rng.random((50, 4), dtype=np.float32), rng.random((50, 4), dtype=np.float32)
    write_embeddings(tmp_path / "emb", "all", first, np.zeros(50, dtype=np.int64), {})
    build_knn_graph(tmp_path / "emb", "all", 5, tmp_path / "knn")
    assert read_knn_graph(tmp_path / "knn", "all", 5, first).shape == (50, 5)
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        read_knn_graph(tmp_path / "knn", "all", 5, second)
