import numpy as np
import pytest

from lightning_modules.data import load_dataset


def test_long_tailed_digits_follow_the_exponential_profile():
    data = load_dataset("digits", "all", {"imbalance": {"ratio": 10, "seed": 0}})
    counts = np.bincount(data.labels)
    smallest_full_class = np.bincount(load_dataset("digits", "all").labels).min()  # 174
    expected = np.floor(smallest_full_class * 10 ** (-np.arange(10) / 9)).astype(int)
    np.testing.assert_array_equal(counts, expected)
    assert counts[0] / counts[-1] == pytest.approx(10, rel=0.05)  # 174 / floor(17.4)
    again = load_dataset("digits", "all", {"imbalance": {"ratio": 10, "seed": 0}})
    np.testing.assert_array_equal(again.images, data.images)
    other_seed = load_dataset("digits", "all", {"imbalance": {"ratio": 10, "seed": 1}})
    assert not np.array_equal(other_seed.images, data.images)


def test_coarse_groups_and_coarse_granularity():
    groups = {"round": [0, 6, 8, 9], "straight": [1, 4, 7], "curved": [2, 3, 5]}
    fine = load_dataset("digits", "all", {"coarse_groups": groups})
    assert fine.coarse_names == ["round", "straight", "curved"]
    assert (fine.coarse_labels[fine.labels == 4] == 1).all() and (fine.coarse_labels[fine.labels == 9] == 0).all()
    coarse = load_dataset("digits", "all", {"coarse_groups": groups, "granularity": "coarse"})
    np.testing.assert_array_equal(coarse.labels, fine.coarse_labels)
    assert coarse.label_names == ["round", "straight", "curved"] and coarse.coarse_labels is None


def test_class_subsets_are_relabelled_in_the_order_given():
    data = load_dataset("digits", "all", {"classes": [7, "3"]})
    full = load_dataset("digits", "all")
    assert data.label_names == ["7", "3"] and set(data.labels) == {0, 1}
    assert (data.labels == 0).sum() == (full.labels == 7).sum()


@pytest.mark.parametrize(
    "options,message",
    [
        ({"classes": [3, 42]}, "classes: no class '42'"),
        ({"coarse_groups": {"a": [0, 1]}}, "class '2' is in no group"),
        ({"granularity": "coarse"}, "granularity: coarse needs coarse labels"),
    ],
)
def test_builder_errors_name_the_key(options, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("digits", "all", options)


def test_easiest_classes_follow_knn_purity_on_the_reference_split():
    from lightning_modules.data.builders import class_knn_purity

    # class 0: a tight blob far away; class 1 and 2: overlapping blobs
    data = load_dataset("synthetic", "train", {"n_classes": 3, "dims": 2, "samples_per_class": 60, "seed": 0})
    reference = load_dataset("synthetic", "test", {"n_classes": 3, "dims": 2, "samples_per_class": 60, "seed": 0})
    purity = class_knn_purity(reference, k=5)
    by_hand = []
    for c in range(3):
        x = reference.images / np.linalg.norm(reference.images, axis=1, keepdims=True)
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        nearest = np.argsort(-sims, axis=1)[:, :5]
        by_hand.append((reference.labels[nearest] == reference.labels[:, None]).mean(1)[reference.labels == c].mean())
    np.testing.assert_allclose(purity, by_hand, atol=1e-6)
    easiest = load_dataset("synthetic", "train", {"n_classes": 3, "dims": 2, "samples_per_class": 60, "seed": 0,
                                                  "easiest": {"n": 2, "reference_split": "test", "k": 5}})
    expected = sorted(range(3), key=lambda c: -purity[c])[:2]
    assert easiest.label_names == [data.label_names[c] for c in expected]
    assert easiest.derivation["easiest"]["classes"] == easiest.label_names
    assert "kNN purity" in easiest.derivation["easiest"]["rule"]
