"""Seed statistics against hand-worked values and scipy: t intervals, paired differences, their verdicts."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lightning_modules.metrics.stats import (adjust_family, holm, mean_interval, paired_difference,
                                             paired_method_comparisons, summarise_seeds, verdict_word)


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
    same = paired_difference([0.5, 0.6], [0.5, 0.6])  # identical: no spread, nothing to test at n = 2
    assert same["difference"] == 0 and np.isnan(same["p_value"]) and verdict_word(same) == "no variance"
    shifted = paired_difference([0.6, 0.7], [0.5, 0.6])  # a constant gap at n = 2: never p = 0
    assert np.isnan(shifted["low"]) and np.isnan(shifted["p_value"]) and verdict_word(shifted) == "no variance"
    # six equal gaps: the exact sign test (2 x 0.5^6 = 0.031), its interval the one value
    six = paired_difference(np.full(6, 0.7), np.full(6, 0.6))
    assert six["p_value"] == pytest.approx(2 * 0.5 ** 6) and verdict_word(six) == "better"
    assert six["low"] == six["high"] == pytest.approx(0.1)
    assert paired_difference(np.full(6, 0.7), np.full(6, 0.7))["p_value"] == 1.0
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


def test_holm_by_hand_and_against_statsmodels_conventions():
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the running maximum 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # 0.5 x 2 capped at 1; 0.9 raised to it (monotone)
    assert np.isnan(holm([np.nan])).all()


def test_a_reports_family_is_adjusted_and_its_verdicts_read_the_adjusted_p():
    rng = np.random.default_rng(0)
    rows = []
    for k in (5, 10, 20):
        for seed in range(3):
            base = 0.7 + rng.normal(0, 0.01)
            rows += [{"dataset": "d", "backbone": "b", "k": k, "seed": seed, "method": "kmeans", "acc": base},
                     {"dataset": "d", "backbone": "b", "k": k, "seed": seed, "method": "temi",
                      "acc": base + (0.1 if k == 10 else 0.02) + rng.normal(0, 0.01)}]
    raw = paired_method_comparisons(pd.DataFrame(rows), "acc", "kmeans")
    family = adjust_family(raw, "clustering report: every method against k-means")
    np.testing.assert_allclose(family.p_holm, holm(raw.p_value))
    for row in family.itertuples():
        assert (row.verdict in ("better", "worse")) == (row.p_holm < 0.05)
    assert (family.p_holm >= family.p_value).all() and family.family.iloc[0].startswith("clustering report")
