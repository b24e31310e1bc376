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
