"""OOD metrics against values worked out by hand (ID positive for fpr95, OOD positive for fpr95_openood)."""

import numpy as np
import pytest

from lightning_modules.metrics.ood import ood_metrics


def test_symmetric_case_where_both_fpr95_conventions_agree():
    # AUROC: 15 of the 16 (ID, OOD) pairs are ordered (only 0.6 < 0.65). Keeping all four ID (3/4 < 95%)
    # accepts the OOD 0.65 -> 1/4; catching all four OOD (threshold 0.65) rejects the ID 0.6 -> 1/4.
    metrics = ood_metrics([0.9, 0.8, 0.7, 0.6], [0.65, 0.5, 0.4, 0.3])
    assert metrics["auroc"] == pytest.approx(15 / 16)
    assert metrics["fpr95"] == pytest.approx(0.25)
    assert metrics["fpr95_openood"] == pytest.approx(0.25)


def test_asymmetric_case_where_the_conventions_differ():
    # ID 1..20; OOD 18 zeros plus 15 and 16. Keeping 19/20 ID (threshold 2) accepts 2 OOD -> 0.10.
    # Catching 19/20 OOD needs the threshold at 15, which rejects the 15 ID samples <= 15 -> 0.75.
    metrics = ood_metrics(np.arange(1, 21), [0] * 18 + [15, 16])
    assert metrics["fpr95"] == pytest.approx(0.10)
    assert metrics["fpr95_openood"] == pytest.approx(0.75)
    # the zeros rank below all 20 ID; 15 and 16 below 5 and 4 ID, each tied with one more (half a pair)
    assert metrics["auroc"] == pytest.approx((18 * 20 + 5.5 + 4.5) / 400)


def test_ties_count_half_for_auroc_and_fully_at_the_threshold():
    # pairs: (0.5, 0.5) twice at 1/2, the other four ordered -> 5/6. Keeping all ID (threshold 0.5) accepts
    # the OOD 0.5 -> 1/2; catching both OOD (threshold 0.5) rejects both ID 0.5 -> 2/3.
    metrics = ood_metrics([0.5, 0.5, 0.9], [0.5, 0.1])
    assert metrics["auroc"] == pytest.approx(5 / 6)
    assert metrics["fpr95"] == pytest.approx(0.5)
    assert metrics["fpr95_openood"] == pytest.approx(2 / 3)


def test_aupr_by_the_trapezoid_over_every_threshold():
    # ID positive: points (R, P) in threshold order (0, 1), (0.5, 1), (0.5, 1/2), (1, 2/3) -> 1/2 + 0 + 7/24.
    # OOD positive (score -s): (0, 1), (0, 0), (1, 1/2), (1, 1/3) -> 0 + 1/4 + 0.
    metrics = ood_metrics([0.9, 0.4], [0.6])
    assert metrics["aupr_in"] == pytest.approx(0.5 + 7 / 24)
    assert metrics["aupr_out"] == pytest.approx(0.25)


def test_perfect_separation_and_higher_scores_meaning_in_distribution():
    perfect = ood_metrics([3.0, 4.0], [1.0, 2.0])
    assert perfect == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0, "fpr95_openood": 0.0}
    inverted = ood_metrics([1.0, 2.0], [3.0, 4.0])
    assert inverted["auroc"] == 0.0 and inverted["fpr95"] == 1.0


def test_auroc_agrees_with_the_mann_whitney_statistic():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    u = mannwhitneyu(id_scores, ood_scores).statistic
    assert ood_metrics(id_scores, ood_scores)["auroc"] == pytest.approx(u / (300 * 200))


@pytest.mark.parametrize("id_scores,ood_scores,match", [([], [1.0], "ID and OOD scores"),
                                                         ([1.0, np.nan], [0.0], "NaN or inf")])
def test_bad_scores_are_refused(id_scores, ood_scores, match):
    with pytest.raises(ValueError, match=match):
        ood_metrics(id_scores, ood_scores)


def test_bootstrap_curves_equal_scikit_learn_on_each_resample():
    """The vectorised per-resample metrics against `ood_metrics` on the resampled scores themselves, on small
    integer scores full of ties (within and across ID / OOD) and with values absent from a resample."""
    from lightning_modules.metrics.ood import _curve_metrics, _labelled

    rng = np.random.default_rng(0)
    for _ in range(200):
        n_id, n_ood = rng.integers(1, 25, 2)
        id_scores = rng.integers(0, 6, n_id).astype(float)
        ood_scores = rng.integers(0, 6, n_ood).astype(float) - 1
        id_rows, ood_rows = rng.integers(0, n_id, n_id), rng.integers(0, n_ood, n_ood)
        expected = ood_metrics(id_scores[id_rows], ood_scores[ood_rows])
        is_id, scores = _labelled(id_scores, ood_scores)
        values, inverse = np.unique(-scores, return_inverse=True)
        id_counts = np.bincount(inverse[is_id == 1][id_rows], minlength=len(values))[None]
        ood_counts = np.bincount(inverse[is_id == 0][ood_rows], minlength=len(values))[None]
        id_positive = _curve_metrics(id_counts, ood_counts)
        ood_positive = _curve_metrics(ood_counts[:, ::-1], id_counts[:, ::-1])
        got = {"auroc": id_positive["auroc"][0], "aupr_in": id_positive["aupr"][0],
               "aupr_out": ood_positive["aupr"][0], "fpr95": id_positive["fpr_at_recall"][0],
               "fpr95_openood": ood_positive["fpr_at_recall"][0]}
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-12), name


def test_bootstrap_intervals_bracket_the_estimate_and_shrink_with_more_samples():
    from lightning_modules.metrics.ood import OOD_METRICS, bootstrap_intervals

    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 2000):
        id_scores, ood_scores = rng.normal(1, 1, n), rng.normal(0, 1, n)
        point = ood_metrics(id_scores, ood_scores)
        intervals = bootstrap_intervals(id_scores, ood_scores, n_resamples=500, seed=0)
        for name in OOD_METRICS:
            assert intervals[f"{name}_low"] <= point[name] <= intervals[f"{name}_high"], name
        widths.append(intervals["auroc_high"] - intervals["auroc_low"])
        assert intervals == bootstrap_intervals(id_scores, ood_scores, n_resamples=500, seed=0)  # fixed seed
    # AUROC's standard error falls like 1/sqrt(n): 40x the samples, about a sixth of the width
    assert 0.1 < widths[1] / widths[0] < 0.25


def test_a_perfect_separation_has_a_degenerate_interval():
    from lightning_modules.metrics.ood import bootstrap_intervals

    intervals = bootstrap_intervals([3.0, 4.0, 5.0], [0.0, 1.0], n_resamples=50)
    assert intervals["auroc_low"] == intervals["auroc_high"] == 1.0
    assert intervals["fpr95_low"] == intervals["fpr95_high"] == 0.0
