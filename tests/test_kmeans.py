import numpy as np
import pytest
from sklearn.cluster import KMeans

from lightning_modules.clustering import METHODS
from lightning_modules.clustering.kmeans import LloydKMeans
from lightning_modules.metrics.clustering import clustering_metrics


def test_registry_resolves_kmeans():
    assert METHODS.get("kmeans") is LloydKMeans


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_scikit_learn_on_digits(digits_pixels, seed):
    x, y = digits_pixels
    ours = clustering_metrics(y, LloydKMeans(10, seed=seed, n_init=10).fit_predict(x), n_clusters=10)
    reference = clustering_metrics(y, KMeans(10, n_init=10, random_state=seed).fit_predict(x), n_clusters=10)
    assert abs(ours["acc"] - reference["acc"]) <= 0.02
    assert abs(ours["nmi"] - reference["nmi"]) <= 0.02
    assert ours["acc"] > 0.7  # k-means on digit pixels is far above chance (0.1)


def test_inertia_is_the_sum_of_squared_distances(digits_pixels):
    x, _ = digits_pixels
    model = LloydKMeans(10, seed=0, n_init=3).fit(x)
    by_hand = sum(np.sum((x[model.labels_ == j] - model.cluster_centers_[j]) ** 2) for j in range(10))
    assert model.inertia_ == pytest.approx(by_hand, rel=1e-5)


def _converged_centroid_gap(max_points_per_centroid):
    """Largest gap between the centroids and the means of the points assigned to them."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (1500, 4)), rng.normal(1.5, 1, (1500, 4))]).astype(np.float32)
    model = LloydKMeans(2, seed=0, n_init=1, max_iter=200, tol=0,
                        max_points_per_centroid=max_points_per_centroid).fit(x)
    means = np.stack([x[model.labels_ == j].mean(0) for j in range(2)])
    return np.abs(means - model.cluster_centers_).max()


def test_trains_on_every_point_by_default():
    # Lloyd on all points converges to centroids that are the means of their clusters; subsampling as
    # faiss does by default (256 points per centroid here) converges to the subsample's means instead.
    assert _converged_centroid_gap(None) < 1e-4
    assert _converged_centroid_gap(256) > 1e-3


def test_spherical_centroids_have_unit_norm(digits_pixels):
    x, _ = digits_pixels
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    model = LloydKMeans(10, seed=0, n_init=2, spherical=True).fit(x)
    np.testing.assert_allclose(np.linalg.norm(model.cluster_centers_, axis=1), 1.0, rtol=1e-5)


def test_restarts_keep_the_lowest_inertia(digits_pixels):
    x, _ = digits_pixels
    single = [LloydKMeans(20, seed=s, n_init=1).fit(x).inertia_ for s in range(3)]
    best_of_many = LloydKMeans(20, seed=0, n_init=8).fit(x).inertia_
    assert best_of_many <= min(single) * 1.001


@pytest.mark.parametrize("k", [1, 11])
def test_k_outside_range_is_an_error(k):
    with pytest.raises(ValueError, match="K"):
        LloydKMeans(k).fit(np.zeros((10, 2), dtype=np.float32))


def test_same_start_same_lloyd_as_scikit_learn(digits_pixels):
    x, _ = digits_pixels
    start = x[np.random.default_rng(0).choice(len(x), 10, replace=False)]
    ours = LloydKMeans(10, max_iter=5).fit(x, init_centroids=start)
    reference = KMeans(10, init=start, n_init=1, max_iter=5, tol=0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(ours.cluster_centers_, reference.cluster_centers_, atol=1e-4)
    assert ours.inertia_ == pytest.approx(reference.inertia_, rel=1e-4)


def test_threads_and_chunks_give_scikit_learns_lloyd():
    # 5,000 rows: split across worker threads, several chunks each, a partial last chunk
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(mean, 1.0, (1000, 16)) for mean in range(5)]).astype(np.float32)
    start = x[rng.choice(len(x), 8, replace=False)]
    ours = LloydKMeans(8, max_iter=10, tol=0).fit(x, init_centroids=start)
    reference = KMeans(8, init=start, n_init=1, max_iter=10, tol=0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(ours.cluster_centers_, reference.cluster_centers_, atol=1e-4)
    np.testing.assert_array_equal(ours.labels_, reference.labels_)
    assert ours.inertia_ == pytest.approx(reference.inertia_, rel=1e-5)


def test_per_cluster_sums_add_each_row_to_its_cluster_in_row_order():
    from lightning_modules.clustering.nearest import add_rows_to_clusters

    rng = np.random.default_rng(2)
    rows = rng.standard_normal((300, 7)).astype(np.float32)
    labels = rng.choice([0, 2, 5], size=300, p=[0.8, 0.15, 0.05])  # uneven; clusters 1, 3, 4 empty
    sums = np.full((6, 7), 1.5, dtype=np.float32)  # added to, not overwritten
    add_rows_to_clusters(rows, labels, sums)
    expected = np.full((6, 7), 1.5, dtype=np.float32)
    for row, label in zip(rows, labels):  # float32, one row after the other: the same roundings
        expected[label] += row
    np.testing.assert_array_equal(sums, expected)
    assert (sums[[1, 3, 4]] == 1.5).all()
    add_rows_to_clusters(rows[:0], labels[:0], sums)  # no rows: nothing changes
    np.testing.assert_array_equal(sums, expected)


def test_a_float16_memory_map_gives_the_labels_of_its_float32_copy(tmp_path):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(mean, 1.0, (1500, 8)) for mean in range(4)]).astype(np.float16)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    start = x[rng.choice(len(x), 6, replace=False)].astype(np.float32)
    on_disk = LloydKMeans(6, max_iter=10, tol=0).fit(mapped, init_centroids=start)
    in_memory = LloydKMeans(6, max_iter=10, tol=0).fit(x.astype(np.float32), init_centroids=start)
    np.testing.assert_array_equal(on_disk.labels_, in_memory.labels_)
    np.testing.assert_allclose(on_disk.cluster_centers_, in_memory.cluster_centers_, rtol=1e-6, atol=1e-6)


def test_top2_are_the_two_nearest_centroids(digits_pixels):
    x, _ = digits_pixels
    model = LloydKMeans(10, seed=0, n_init=1).fit(x)
    squared = ((x[:, None, :].astype(np.float64) - model.cluster_centers_[None]) ** 2).sum(-1)
    by_hand = np.argsort(squared, axis=1)[:, :2]
    agree = (model.top2_ == by_hand).all(axis=1)
    gaps = np.sort(squared, axis=1)
    ties = np.isclose(gaps[:, 1], gaps[:, 2], rtol=1e-5) | np.isclose(gaps[:, 0], gaps[:, 1], rtol=1e-5)
    assert (agree | ties).all()
    np.testing.assert_array_equal(model.labels_, model.top2_[:, 0])


def test_empty_cluster_takes_the_farthest_point_as_scikit_learn():
    # the third start is far from every point: it would be empty after the first assignment
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(6, 1, (300, 2))]).astype(np.float32)
    start = np.array([[0, 0], [6, 6], [100, 100]], dtype=np.float32)
    ours = LloydKMeans(3, max_iter=3, tol=0).fit(x, init_centroids=start)
    reference = KMeans(3, init=start, n_init=1, max_iter=3, tol=0, algorithm="lloyd").fit(x)
    assert np.bincount(ours.labels_, minlength=3).min() > 0
    np.testing.assert_allclose(ours.cluster_centers_, reference.cluster_centers_, atol=1e-4)


def test_tol_stops_early_and_zero_runs_every_iteration(digits_pixels):
    x, _ = digits_pixels
    start = x[np.random.default_rng(0).choice(len(x), 10, replace=False)]
    converged = LloydKMeans(10, max_iter=300, tol=0).fit(x, init_centroids=start)
    early = LloydKMeans(10, max_iter=300, tol=1e-1).fit(x, init_centroids=start)
    reference = KMeans(10, init=start, n_init=1, max_iter=300, tol=1e-1, algorithm="lloyd").fit(x)
    assert early.inertia_ >= converged.inertia_
    np.testing.assert_allclose(early.cluster_centers_, reference.cluster_centers_, atol=1e-3)


def test_gpu_branch_runs_faiss_kmeans_with_our_settings(digits_pixels, monkeypatch):
    # No GPU here: run the faiss branch with faiss's CPU index, which is what differs on a GPU node.
    import faiss

    real_kmeans = faiss.Kmeans
    made = []

    def cpu_kmeans(*args, **kwargs):
        made.append(kwargs)
        return real_kmeans(*args, **{**kwargs, "gpu": False})

    monkeypatch.setattr(faiss, "Kmeans", cpu_kmeans)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    x, _ = digits_pixels
    on_gpu_path = LloydKMeans(10, seed=0, n_init=3).fit(x)
    on_cpu_path = LloydKMeans(10, seed=0, n_init=3, use_gpu=False).fit(x)
    # one faiss run per k-means++ start (faiss seeds at random itself), the lowest objective kept
    assert made == [dict(niter=100, seed=0, nredo=1, spherical=False, max_points_per_centroid=len(x),
                         min_points_per_centroid=1, gpu=True, verbose=False)] * 3
    assert on_gpu_path.inertia_ == pytest.approx(on_cpu_path.inertia_, rel=0.02)
    by_hand = sum(np.sum((x[on_gpu_path.labels_ == j] - on_gpu_path.cluster_centers_[j]) ** 2) for j in range(10))
    assert on_gpu_path.inertia_ == pytest.approx(by_hand, rel=1e-5)


def test_kmeans_plus_plus_is_scikit_learns_seeding(digits_pixels):
    """The default start is sklearn's kmeans_plusplus on the training rows (with the seed drawn from ours), and
    one k-means++ run already beats the best of ten random starts' worst."""
    from sklearn.cluster import kmeans_plusplus

    x, _ = digits_pixels
    rng = np.random.default_rng(0)
    start, _ = kmeans_plusplus(x, 10, random_state=int(rng.integers(2**31)))
    reference = KMeans(10, init=start, n_init=1, max_iter=100, tol=1e-4, algorithm="lloyd").fit(x)
    ours = LloydKMeans(10, seed=0).fit(x)
    assert ours.inertia_ == pytest.approx(reference.inertia_, rel=1e-5)
    randoms = [LloydKMeans(10, seed=s, init="random").fit(x).inertia_ for s in range(10)]
    assert ours.inertia_ <= max(randoms)


def test_kmeans_plus_plus_on_a_sample_and_a_bad_init_name(digits_pixels):
    x, _ = digits_pixels
    sampled = LloydKMeans(10, seed=0, init_sample=300).fit(x)
    full = LloydKMeans(10, seed=0).fit(x)
    assert sampled.inertia_ == pytest.approx(full.inertia_, rel=0.05)
    with pytest.raises(ValueError, match="kmeans.init = 'kmeans'; allowed: k-means\\+\\+, random"):
        LloydKMeans(10, init="kmeans")
