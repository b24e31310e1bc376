"""Seed statistics against hand-worked values and scipy: t intervals, paired differences, their verdicts."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lightning_modules.metrics.stats import (mean_interval, paired_difference, paired_method_comparisons,
                                             summarise_seeds, verdict_word)


def test_mean_interval_is_the_t_interval_with_ddof_1():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / np.sqrt(3)  # t(0.975, 2) × std (ddof = 1, = 1) / sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2 - half, 2 + half))
    assert np.isnan(mean_interval([5.0])[1]) and np.isnan(mean_interval([np.nan])[0])
    assert mean_interval([4.0, np.nan, 6.0])[0] == 5.0  # NaN (e.g. ACC undefined) is dropped


def test_paired_difference_against_scipy_and_by_hand():
    a, b = np.array([0.80, 0.85, 0.83]), np.array([0.75, 0.79, 0.80])
    result = paired_difference(a, b)
    differences = a - b  # 0.05, 0.06, 0.03
    assert result["difference"] == pytest.approx(differences.mean())
    assert result["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    interval = stats.t.interval(0.95, 2, loc=differences.mean(), scale=stats.sem(differences))
    assert (result["low"], result["high"]) == pytest.approx(interval)
    assert verdict_word(result) == "better"


def test_paired_difference_degenerate_cases():
    same = paired_difference([0.5, 0.6], [0.5, 0.6])  # identical: no spread
    assert same["difference"] == 0 and same["p_value"] == 1.0 and verdict_word(same) == "within noise"
    shifted = paired_difference([0.6, 0.7], [0.5, 0.6])  # a constant gap: the interval is that gap
    assert shifted["low"] == shifted["high"] == pytest.approx(0.1) and verdict_word(shifted) == "better"
    one = paired_difference([0.6, np.nan], [0.5, 0.4])  # one usable pair
    assert one["n"] == 1 and verdict_word(one) == "one seed"
    noisy = paired_difference([0.9, 0.1, 0.5], [0.1, 0.9, 0.5])
    assert verdict_word(noisy) == "within noise"


def test_paired_comparisons_pair_on_the_seeds_both_methods_ran():
    runs = pd.DataFrame({
        "dataset": "d", "backbone": "b", "k": 10,
        "method": ["kmeans"] * 3 + ["temi"] * 3 + ["dec"],
        "seed": [0, 1, 2, 0, 1, 2, 0],
        "acc": [0.70, 0.72, 0.71, 0.80, 0.83, 0.81, 0.60]})
    table = paired_method_comparisons(runs, "acc", "kmeans").set_index("method")
    assert table.loc["temi", "n"] == 3 and table.loc["temi", "difference"] == pytest.approx(0.1033333)
    assert table.loc["temi", "verdict"] == "better"
    assert table.loc["dec", "n"] == 1 and table.loc["dec", "verdict"] == "one seed"
    summary = summarise_seeds(runs, ["acc"], ["method"]).set_index("method")
    assert summary.loc["temi", "seeds"] == 3 and summary.loc["temi", "acc"] == pytest.approx(0.8133333)
    assert np.isnan(summary.loc["dec", "acc_low"])


def test_comparison_lines_say_within_noise_and_one_seed():
    from lightning_modules.metrics.stats import describe_comparisons

    runs = pd.DataFrame({"dataset": "d", "backbone": "b", "k": 5, "method": ["kmeans", "kmeans", "temi", "temi", "dec"],
                         "seed": [0, 1, 0, 1, 0], "acc": [0.5, 0.6, 0.7, 0.5, 0.4]})
    [line] = describe_comparisons(paired_method_comparisons(runs, "acc", "kmeans"))
    assert line.startswith("d / b / k=5 (acc, vs kmeans): temi +0.050")
    assert "within noise" in line and "dec -0.100 (one seed: no interval)" in line
