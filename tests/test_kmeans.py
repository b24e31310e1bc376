import numpy as np
import pytest
from sklearn.cluster import KMeans

from lightning_modules.clustering import METHODS
from lightning_modules.clustering.kmeans import FaissKMeans
from lightning_modules.metrics.clustering import clustering_metrics


def test_registry_resolves_kmeans():
    assert METHODS.get("kmeans") is FaissKMeans


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_scikit_learn_on_digits(digits_pixels, seed):
    x, y = digits_pixels
    ours = clustering_metrics(y, FaissKMeans(10, seed=seed, n_init=10).fit_predict(x), n_clusters=10)
    reference = clustering_metrics(y, KMeans(10, n_init=10, random_state=seed).fit_predict(x), n_clusters=10)
    assert abs(ours["acc"] - reference["acc"]) <= 0.02
    assert abs(ours["nmi"] - reference["nmi"]) <= 0.02
    assert ours["acc"] > 0.7  # k-means on digit pixels is far above chance (0.1)


def test_inertia_is_the_sum_of_squared_distances(digits_pixels):
    x, _ = digits_pixels
    model = FaissKMeans(10, seed=0, n_init=3).fit(x)
    by_hand = sum(np.sum((x[model.labels_ == j] - model.cluster_centers_[j]) ** 2) for j in range(10))
    assert model.inertia_ == pytest.approx(by_hand, rel=1e-5)


def _converged_centroid_gap(max_points_per_centroid):
    """Largest gap between the centroids and the means of the points assigned to them."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (1500, 4)), rng.normal(1.5, 1, (1500, 4))]).astype(np.float32)
    model = FaissKMeans(2, seed=0, n_init=1, max_iter=200, max_points_per_centroid=max_points_per_centroid).fit(x)
    means = np.stack([x[model.labels_ == j].mean(0) for j in range(2)])
    return np.abs(means - model.cluster_centers_).max()


def test_trains_on_every_point_by_default():
    # Lloyd on all points converges to centroids that are the means of their clusters; faiss's
    # default subsampling (256 points per centroid here) converges to the subsample's means instead.
    assert _converged_centroid_gap(None) < 1e-4
    assert _converged_centroid_gap(256) > 1e-3


def test_spherical_centroids_have_unit_norm(digits_pixels):
    x, _ = digits_pixels
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    model = FaissKMeans(10, seed=0, n_init=2, spherical=True).fit(x)
    np.testing.assert_allclose(np.linalg.norm(model.cluster_centers_, axis=1), 1.0, rtol=1e-5)


def test_restarts_keep_the_lowest_inertia(digits_pixels):
    x, _ = digits_pixels
    single = [FaissKMeans(20, seed=s, n_init=1).fit(x).inertia_ for s in range(3)]
    best_of_many = FaissKMeans(20, seed=0, n_init=8).fit(x).inertia_
    assert best_of_many <= min(single) * 1.001


@pytest.mark.parametrize("k", [1, 11])
def test_k_outside_range_is_an_error(k):
    with pytest.raises(ValueError, match="K"):
        FaissKMeans(k).fit(np.zeros((10, 2), dtype=np.float32))


def test_same_start_same_lloyd_as_scikit_learn(digits_pixels):
    x, _ = digits_pixels
    start = x[np.random.default_rng(0).choice(len(x), 10, replace=False)]
    ours = FaissKMeans(10, max_iter=5).fit(x, init_centroids=start)
    reference = KMeans(10, init=start, n_init=1, max_iter=5, tol=0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(ours.cluster_centers_, reference.cluster_centers_, atol=1e-4)
    assert ours.inertia_ == pytest.approx(reference.inertia_, rel=1e-4)
