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
