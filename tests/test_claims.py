"""The claims ledger: every finding on synthetic tables built to support it, contradict it, leave it undecided and
leave it untestable; the one rule (the deciding interval is dual to Holm's p); values without spread; a finding
whose code fails; the analysis' pre-registration."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lightning_modules.analysis.claims import analysis, dataset_roles, default_margins, register_analysis, registration_state
from lightning_modules.analysis.claims.ledger import CLAIMS, FindingError, decide, ledger, registration_banner
from lightning_modules.metrics.stats import ALPHA, holm


def verdict(tables: dict, claim: str, context: dict | None = None) -> pd.Series:
    """The ledger's row of `claim` (the other findings are not testable on these tables, so Holm leaves it alone)."""
    return ledger(tables, context).set_index("claim").loc[claim]


def clustering_table(head_gain, noise: float, datasets=("digits",), seeds=5, backbones=("pixels",), seed=0,
                     coarse_above=None) -> pd.DataFrame:
    """k-means and TEMI at K 10 and 20 on each dataset and backbone, TEMI `head_gain` ACC above k-means (a number or
    a function of the dataset), plus noise; `coarse_above`: second clusters' coarse accuracy above chance."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in datasets:
        gain = head_gain(dataset) if callable(head_gain) else head_gain
        for backbone in backbones:
            for k in (10, 20):
                for s in range(seeds):
                    base = 0.6 + rng.normal(0, 0.01)
                    common = {"dataset": dataset, "backbone": backbone, "k": k, "seed": s, "nmi": base}
                    rows.append({**common, "method": "kmeans", "acc": base})
                    row = {**common, "method": "temi", "acc": base + gain + rng.normal(0, noise)}
                    if coarse_above is not None:
                        row["coarse_acc_2nd"] = 0.5 + coarse_above + rng.normal(0, noise)
                    rows.append(row)
    return pd.DataFrame(rows)


THREE = ("a", "b", "c")


@pytest.mark.parametrize("gain, noise, expected", [(0.1, 0.01, "supported"), (-0.1, 0.01, "contradicted"),
                                                   (0.0, 0.05, "inconclusive")])
def test_heads_beat_kmeans_over_seeds(gain, noise, expected):
    table = clustering_table(gain, noise, datasets=THREE, backbones=("pixels", "random-256"))
    row = verdict({"clustering": table}, "C1")
    assert row.verdict == expected, row.to_dict()
    # the unit is the seed: every setting of a seed (both backbones, both K, all datasets) is one value
    assert row.n == 5 and row.unit.startswith("seed") and "12 settings" in row.test
    gaps = table[table.method == "temi"].acc.to_numpy() - table[table.method == "kmeans"].acc.to_numpy()
    per_seed = pd.Series(gaps).groupby(table[table.method == "temi"].seed.to_numpy()).mean()
    assert row.effect == pytest.approx(per_seed.mean())
    assert row.p_value == pytest.approx(stats.ttest_1samp(per_seed, 0).pvalue)


def test_heads_against_kmeans_on_balanced_benchmarks_only():
    table = clustering_table(lambda d: -0.2 if d == "digits-lt10" else 0.1, 0.01, datasets=("digits", "digits-lt10"))
    context = {"datasets": {"digits": {}, "digits-lt10": {"imbalanced_of": "digits"}}}
    row = verdict({"clustering": table}, "C1", context)
    assert row.verdict == "supported" and row.effect == pytest.approx(0.1, abs=0.01)
    assert "left out: digits-lt10" in row.test


def test_tables_without_what_the_clustering_findings_need():
    kmeans_only = clustering_table(0.1, 0.01)
    kmeans_only = kmeans_only[kmeans_only.method == "kmeans"]
    row = verdict({"clustering": kmeans_only}, "C1")
    assert row.verdict == "not testable" and "no clustering head" in row.reason
    assert "no acc" in verdict({"clustering": kmeans_only.drop(columns="acc")}, "C1").reason  # no labels: no ACC
    lt_only = clustering_table(0.1, 0.01, datasets=("digits-lt10",))
    context = {"datasets": {"digits-lt10": {"imbalanced_of": "digits"}}}
    assert "balanced" in verdict({"clustering": lt_only}, "C1", context).reason


LT_CONTEXT = dataset_roles({"datasets": {
    "digits": {"source": "digits", "split": "all", "coarse_groups": {"a": [0], "b": [1, 2]}},
    "digits-lt10": {"source": "digits", "split": "all", "imbalance": {"ratio": 10}}}})


def test_dataset_roles_from_the_config():
    assert LT_CONTEXT["datasets"]["digits-lt10"]["imbalanced_of"] == "digits"
    assert LT_CONTEXT["datasets"]["digits"]["coarse_chance"] == pytest.approx((1 / 3) ** 2 + (2 / 3) ** 2)


@pytest.mark.parametrize("balanced, imbalanced, noise, expected", [
    (0.1, 0.0, 0.01, "supported"), (0.0, 0.1, 0.01, "contradicted"), (0.05, 0.05, 0.05, "inconclusive")])
def test_imbalance_shrinks_the_gap(balanced, imbalanced, noise, expected):
    table = clustering_table(lambda d: balanced if d == "digits" else imbalanced, noise,
                             datasets=("digits", "digits-lt10"))
    row = verdict({"clustering": table}, "C2", LT_CONTEXT)
    assert row.verdict == expected, row.to_dict()
    assert row.n == 5 and row.effect == pytest.approx(balanced - imbalanced, abs=3 * noise)


def test_imbalance_needs_its_variant():
    table = clustering_table(0.1, 0.01, datasets=("digits", "digits-lt10"))
    assert "no imbalanced variant" in verdict({"clustering": table}, "C2").reason
    only_balanced = clustering_table(0.1, 0.01, datasets=("digits",))
    assert "imbalanced variant" in verdict({"clustering": only_balanced}, "C2", LT_CONTEXT).reason


EASY = {"datasets": {"digits-easy": {"easy": True}, "digits": {}}}


@pytest.mark.parametrize("gain, noise, expected", [(0.1, 0.01, "supported"), (-0.1, 0.01, "contradicted"),
                                                   (0.0, 0.05, "inconclusive")])
def test_kmeans_lags_on_easy_benchmarks(gain, noise, expected):
    table = clustering_table(lambda d: gain if d == "digits-easy" else -gain, noise, datasets=("digits", "digits-easy"))
    row = verdict({"clustering": table}, "C3", EASY)
    assert row.verdict == expected and "digits-easy" in row.test and row.n == 5


def test_easy_benchmarks_must_be_named_and_run():
    table = clustering_table(0.1, 0.01)
    assert "claims.easy_datasets" in verdict({"clustering": table}, "C3").reason
    assert "no head with k-means runs on the easy" in verdict({"clustering": table}, "C3", EASY).reason


LARGEST = {"datasets": {"in21k": {"largest": True}, "in1k": {}}}


@pytest.mark.parametrize("smaller, largest, noise, expected", [
    (0.1, 0.0, 0.005, "supported"), (0.0, 0.1, 0.005, "contradicted"), (0.05, 0.05, 0.05, "inconclusive")])
def test_the_gap_at_the_largest_scale(smaller, largest, noise, expected):
    table = clustering_table(lambda d: largest if d == "in21k" else smaller, noise, datasets=("in1k", "in21k"),
                             backbones=("dino", "clip"))
    row = verdict({"clustering": table}, "C4", LARGEST)
    assert row.verdict == expected, row.to_dict()
    assert row.n == 8 and row.unit.startswith("setting")  # 2 datasets x 2 backbones x 2 K
    per_setting = table.assign(gap=np.where(table.method == "temi", 1, -1) * table.acc).groupby(
        ["dataset", "backbone", "k"]).gap.sum()
    a, b = per_setting.drop("in21k", level="dataset"), per_setting.loc["in21k"]
    assert row.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_the_largest_scale_must_be_named_and_run():
    table = clustering_table(0.1, 0.01, datasets=("in1k",))
    assert "claims.largest_datasets" in verdict({"clustering": table}, "C4").reason
    assert "both at the largest" in verdict({"clustering": table}, "C4", LARGEST).reason


COARSE = {"datasets": {"digits": {"coarse_chance": 0.5}}}


@pytest.mark.parametrize("above, noise, expected", [(0.2, 0.01, "supported"), (-0.2, 0.01, "contradicted"),
                                                    (0.0, 0.05, "inconclusive")])
def test_second_clusters_capture_coarse_classes(above, noise, expected):
    table = clustering_table(0.0, noise, coarse_above=above)
    row = verdict({"clustering": table}, "C5", COARSE)
    assert row.verdict == expected and row.n == 5 and row.effect == pytest.approx(above, abs=3 * noise)


def test_coarse_classes_need_coarse_groups_and_second_clusters():
    table = clustering_table(0.0, 0.01, coarse_above=0.2)
    assert "coarse_groups" in verdict({"clustering": table}, "C5").reason
    assert "no coarse_acc_2nd" in verdict({"clustering": table.drop(columns="coarse_acc_2nd")}, "C5", COARSE).reason


def diffusion_table(cluster_fd: dict, none_fd: float = 40.0, class_fd: float = 21.0, seeds=6,
                    noise=0.5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(seeds):
        for cond, fd in {"none": none_fd, "class": class_fd, **cluster_fd}.items():
            k = int(cond.rsplit("k", 1)[1]) if cond.startswith("clusters-") else None
            rows.append({"dataset": "digits", "cond": cond, "method": "kmeans" if k else None, "k": k, "seed": s,
                         "fd_classifier": fd + rng.normal(0, noise)})
    return pd.DataFrame(rows)


CLUSTERS = {"clusters-kmeans-k5": 30.0, "clusters-kmeans-k10": 20.0}


@pytest.mark.parametrize("none_fd, noise, expected", [(40.0, 0.5, "supported"), (10.0, 0.5, "contradicted"),
                                                      (20.0, 8.0, "inconclusive")])
def test_cluster_conditioning_against_unconditional(none_fd, noise, expected):
    row = verdict({"diffusion": diffusion_table(CLUSTERS, none_fd=none_fd, noise=noise)}, "C6")
    assert row.verdict == expected, row.to_dict()
    assert "clusters-kmeans-k10" in row.test and "Bonferroni x 2" in row.test and row.n == 6


@pytest.mark.parametrize("class_fd, noise, expected", [
    (19.5, 0.3, "supported"),     # clusters 20 against 19.5: 2.6% above, inside the declared 10%
    (15.0, 0.3, "contradicted"),  # 33% above: worse than the margin, as an unconditional model is
    (18.2, 3.0, "inconclusive")])
def test_cluster_conditioning_matches_the_classes_within_a_declared_margin(class_fd, noise, expected):
    row = verdict({"diffusion": diffusion_table(CLUSTERS, class_fd=class_fd, noise=noise)}, "C6b")
    assert row.verdict == expected, row.to_dict()
    assert row.margin == default_margins()["fd_ratio"] == 0.1 and row.threshold == pytest.approx(-np.log(1.1))
    stricter = verdict({"diffusion": diffusion_table(CLUSTERS, class_fd=class_fd, noise=noise)}, "C6b",
                       {"margins": {"fd_ratio": 0.01}})
    assert stricter.threshold == pytest.approx(-np.log(1.01))


def test_an_unconditional_model_does_not_match_the_classes():
    """The real-vs-real floor made everything within ~12 FD "match"; the declared 10% does not."""
    unconditional_like = {"clusters-kmeans-k10": 30.0}
    assert verdict({"diffusion": diffusion_table(unconditional_like, class_fd=21.0)}, "C6b").verdict == "contradicted"


def test_conditioning_needs_its_reference():
    table = diffusion_table(CLUSTERS)
    assert "'none' runs" in verdict({"diffusion": table[table.cond != "none"]}, "C6").reason
    assert "no diffusion table" in verdict({}, "C6b").reason


BOUND_RUNS = {"clusters-kmeans-k5": 30.0, "clusters-kmeans-k10": 20.0, "clusters-kmeans-k40": 25.0}


def bounds(bound: int) -> pd.DataFrame:
    return pd.DataFrame({"dataset": ["digits"], "bound": [bound]})


def test_the_fd_optimal_k_against_the_bound_compares_like_with_like():
    runs = diffusion_table(BOUND_RUNS)
    row = verdict({"diffusion": runs, "cluster_bounds": bounds(12)}, "C7")
    # one K above the bound (40), so one K below it: the nearest (10), not the best of 5 and 10
    by_seed = runs.set_index(["cond", "seed"]).fd_classifier
    margins = [by_seed["clusters-kmeans-k40", s] - by_seed["clusters-kmeans-k10", s] for s in range(6)]
    assert row.effect == pytest.approx(np.mean(margins)) and row.n == 6 and row.verdict == "supported"
    assert row.p_value == pytest.approx(stats.ttest_1samp(margins, 0).pvalue)
    nearest_is_worse = diffusion_table({"clusters-kmeans-k5": 10.0, "clusters-kmeans-k10": 30.0,
                                        "clusters-kmeans-k40": 25.0})
    # the best K at or below (5) beats 40, but the nearest (10) does not: K just above the bound is better
    assert verdict({"diffusion": nearest_is_worse, "cluster_bounds": bounds(12)}, "C7").verdict == "contradicted"
    assert verdict({"diffusion": runs, "cluster_bounds": bounds(7)}, "C7").verdict == "contradicted"  # 10 above 7
    noisy = diffusion_table({"clusters-kmeans-k10": 25.0, "clusters-kmeans-k40": 25.0}, noise=5.0)
    assert verdict({"diffusion": noisy, "cluster_bounds": bounds(12)}, "C7").verdict == "inconclusive"


def test_the_bound_needs_k_on_both_sides():
    runs = diffusion_table(BOUND_RUNS)
    one_side = verdict({"diffusion": runs, "cluster_bounds": bounds(50)}, "C7")
    assert one_side.verdict == "not testable" and "by construction" in one_side.reason
    assert verdict({"diffusion": runs}, "C7").reason == "no cluster_bounds table"


def link_tables(fd_of_rank, conditions: int) -> dict:
    """`conditions` k-means cluster conditions whose NMI rises with K and whose FD is fd_of_rank(rank)."""
    ks = list(range(2, 2 + conditions))
    diffusion = pd.DataFrame([{"dataset": "digits", "cond": f"clusters-kmeans-k{k}", "method": "kmeans", "k": k,
                               "seed": 0, "fd_classifier": float(fd_of_rank(i))} for i, k in enumerate(ks)])
    clustering = pd.DataFrame([{"dataset": "digits", "backbone": "pixels", "method": "kmeans", "k": k, "seed": 0,
                                "acc": 0.5, "nmi": 0.1 + 0.01 * i} for i, k in enumerate(ks)])
    return {"diffusion": diffusion, "clustering": clustering}


def test_no_link_between_clustering_and_generation_is_an_equivalence_test():
    alternating = lambda i: (i * 17) % 41  # a permutation of the ranks with Spearman rho near 0
    row = verdict(link_tables(alternating, 41), "C8")
    assert abs(row.effect) < 0.1 and row.verdict == "supported" and row.n == 41 and row.margin == 0.5
    assert -0.5 < row.low_decides and row.high_decides < 0.5
    se = np.sqrt(1.06 / 38)  # Fieller, Hartley and Pearson's variance of a rank correlation's z
    assert row.high == pytest.approx(np.tanh(np.arctanh(row.effect) + stats.norm.ppf(0.975) * se))
    assert verdict(link_tables(lambda i: i, 41), "C8").verdict == "contradicted"  # rho 1: strongly linked
    assert verdict(link_tables(alternating, 6), "C8").verdict == "inconclusive"  # six conditions decide nothing
    few = verdict(link_tables(lambda i: i, 3), "C8")
    assert few.verdict == "not testable" and "4 or more" in few.reason


def ood_table(knn_gain: float, pairs=8, backbones=("pixels", "random-256"), noise=0.005) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for p in range(pairs):
        for backbone in backbones:
            base = 0.8 + rng.normal(0, 0.02)
            for scorer, labels, auroc in [("knn1", "none", base + knn_gain), ("knn50", "none", base + knn_gain - 0.01),
                                          ("mahalanobis", "none", base), ("probe-energy", "classes", base + 0.1)]:
                rows.append({"dataset": "d", "backbone": backbone, "ood": f"pair{p}", "scorer": scorer,
                             "fit_labels": labels, "attack_style": None, "auroc": auroc + rng.normal(0, noise)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("gain, expected", [(0.05, "supported"), (-0.05, "contradicted"), (0.0, "inconclusive")])
def test_knn_as_the_best_unsupervised_score(gain, expected):
    row = verdict({"ood": ood_table(gain, noise=0.005 if gain else 0.05)}, "C9")
    assert row.verdict == expected, row.to_dict()
    assert row.n == 8 and row.unit.startswith("OOD set") and "knn1" in row.test  # backbones averaged per pair


@pytest.mark.parametrize("probe_gain, expected", [(0.1, "supported"), (-0.3, "contradicted")])
def test_probes_against_unsupervised_scores(probe_gain, expected):
    table = ood_table(0.0)
    table.loc[table.scorer == "probe-energy", "auroc"] += probe_gain - 0.1
    assert verdict({"ood": table}, "C10").verdict == expected


def test_probes_inconclusive_and_untestable():
    table = ood_table(0.0, noise=0.1)
    table.loc[table.scorer == "probe-energy", "auroc"] -= 0.1
    assert verdict({"ood": table}, "C10").verdict == "inconclusive"
    assert "linear-probe" in verdict({"ood": table[table.scorer != "probe-energy"]}, "C10").reason
    assert "kNN score" in verdict({"ood": table[~table.scorer.str.startswith("knn")]}, "C9").reason
    odd = {"ood": pd.DataFrame({"scorer": ["knn1"], "auroc": [0.9], "fit_labels": [None], "ood": [1]})}
    assert "no backbone" in verdict(odd, "C9").reason  # a table without a column: said, not raised


def attacked(aurocs, styles=("smooth",)) -> pd.DataFrame:
    pairs = [f"pair{i}" for i in range(len(aurocs))]
    return pd.concat([pd.DataFrame({"dataset": "d", "backbone": "pixels", "ood": pairs, "scorer": f"knn1-adv-{style}",
                                    "base_scorer": "knn1", "fit_labels": "none", "attack_style": style,
                                    "auroc": aurocs, "auroc_clean": 0.9}) for style in styles])


@pytest.mark.parametrize("aurocs, expected", [
    ([0.1, 0.2, 0.15, 0.05, 0.12, 0.3], "supported"),
    ([0.5, 0.49, 0.51, 0.5, 0.48, 0.52], "supported"),  # exactly at chance is a defeat (below 0.5 + 0.05)
    ([0.9, 0.85, 0.95, 0.88, 0.92, 0.9], "contradicted"),
    ([0.3, 0.9, 0.5, 0.7, 0.4, 0.6], "inconclusive")])
def test_adversarial_images_defeat_the_detector(aurocs, expected):
    row = verdict({"ood": pd.concat([ood_table(0.0, pairs=6), attacked(aurocs)])}, "C11")
    assert row.verdict == expected and row.threshold == pytest.approx(0.55) and row.n == 6


def test_the_attacker_picks_its_most_effective_style():
    table = ood_table(0.0, pairs=6)
    defeated = attacked([0.1, 0.2, 0.15, 0.05, 0.12, 0.3])
    harmless = attacked([0.99] * 6, styles=("patchy",))
    both = verdict({"ood": pd.concat([table, defeated, harmless])}, "C11")
    assert both.effect == pytest.approx(verdict({"ood": pd.concat([table, defeated])}, "C11").effect)
    assert "no adversarial" in verdict({"ood": table}, "C11").reason


def negatives_table(cells, sets=("rotations", "permuted")) -> pd.DataFrame:
    """cells: (pair, backbone, sensitivities, aurocs), one value per negative set."""
    rows = []
    for pair, backbone, sensitivities, aurocs in cells:
        for name, sensitivity, auroc in zip(sets, sensitivities, aurocs):
            rows.append({"dataset": "d", "backbone": backbone, "ood": pair, "scorer": f"selfdistill-{name}",
                         "fit_labels": "none", "sensitivity": sensitivity, "auroc": auroc})
    return pd.DataFrame(rows)


def test_the_sensitivity_against_the_best_negatives_is_tested_against_one_in_m():
    right, wrong = ((0.9, 0.8, 0.7), (0.95, 0.90, 0.85)), ((0.9, 0.8, 0.7), (0.85, 0.95, 0.90))
    three = ("rotations", "permuted", "jigsaw")
    cells = [(f"pair{p}", b, *(right if (p + i) % 4 else wrong)) for p in range(8) for i, b in
             enumerate(("pixels", "random-256"))]
    row = verdict({"ood": negatives_table(cells, three)}, "C12")
    # per pair: the share of its backbones picked right, minus chance 1/3
    hits = pd.DataFrame([(c[0], float(c[3] == right[1])) for c in cells]).groupby(0)[1].mean() - 1 / 3
    assert row.n == 8 and row.effect == pytest.approx(hits.mean()) and row.verdict == "supported"
    assert row.p_value == pytest.approx(stats.ttest_1samp(hits, 0).pvalue)


def test_the_sensitivity_drops_ties_and_says_so():
    far = [(f"noise{p}", "pixels", (0.9, 0.8), (1.0, 1.0)) for p in range(8)]  # every set at AUROC 1: a tie
    assert "single best AUROC" in verdict({"ood": negatives_table(far)}, "C12").reason
    tied_sensitivity = [(f"pair{p}", "pixels", (0.9, 0.9), (0.95, 0.9)) for p in range(8)]
    assert verdict({"ood": negatives_table(tied_sensitivity)}, "C12").verdict == "not testable"
    wrong = [(f"pair{p}", "pixels", (0.9, 0.8), (0.9, 0.95 if p else 0.8)) for p in range(10)]
    assert verdict({"ood": negatives_table(wrong)}, "C12").verdict == "contradicted"  # 1 of 10 against 1/2
    mixed = [(f"pair{p}", "pixels", (0.9, 0.8), (0.95, 0.9) if p % 2 else (0.9, 0.95)) for p in range(10)]
    assert verdict({"ood": negatives_table(mixed)}, "C12").verdict == "inconclusive"


def test_values_without_spread():
    two_equal = verdict({"ood": negatives_table([(f"pair{p}", "pixels", (0.9, 0.8), (0.95, 0.9)) for p in range(2)])},
                        "C12")
    assert two_equal.verdict == "inconclusive" and "no variance" in two_equal.reason  # never p = 0 at n = 2
    assert np.isnan(two_equal.p_value)
    six_equal = verdict({"ood": negatives_table([(f"pair{p}", "pixels", (0.9, 0.8), (0.95, 0.9)) for p in range(6)])},
                        "C12")
    # six picked right out of six: the exact sign test, 2 x 0.5^6, and its interval is the one value
    assert six_equal.p_value == pytest.approx(2 * 0.5 ** 6) and six_equal.verdict == "supported"
    assert six_equal.low_decides == six_equal.high_decides == 0.5


def test_one_value_and_no_tables():
    frame = ledger({}, {})
    assert list(frame.claim) == list(CLAIMS) and set(frame.verdict) == {"not testable"}
    assert frame.reason.str.len().gt(0).all()
    one_seed = clustering_table(0.1, 0.01, seeds=1)
    row = verdict({"clustering": one_seed}, "C1")
    assert row.verdict == "inconclusive" and "one value" in row.reason


def test_a_finding_that_fails_fails_the_ledger(monkeypatch):
    def broken(tables, context):
        raise KeyError("a column nobody checked")

    monkeypatch.setitem(CLAIMS, "C5", (CLAIMS["C5"][0], broken))
    with pytest.raises(FindingError, match="C5 failed: KeyError"):
        ledger({}, {})


def test_the_deciding_interval_is_dual_to_holm():
    tables = {"clustering": clustering_table(0.02, 0.02, datasets=THREE, seed=3), "ood": ood_table(0.01, noise=0.02),
              "diffusion": diffusion_table(CLUSTERS, none_fd=21.0, noise=2.0)}
    frame = ledger(tables).set_index("claim")
    tested = frame.p_value.notna()
    assert tested.sum() >= 5
    np.testing.assert_allclose(frame.p_holm[tested], holm(frame.p_value[tested]))
    for claim, row in frame[tested].iterrows():
        decisive = row.verdict in ("supported", "contradicted")
        assert decisive == (row.p_holm < ALPHA), claim
        excludes = row.low_decides > row.threshold or row.high_decides < row.threshold
        assert excludes == decisive, claim
        assert row.level_decides >= 0.95 - 1e-12 and row.low_decides <= row.low  # never narrower than the raw 95%


def test_decide_by_hand():
    assert decide(0.1, 0.3, 0.0, +1) == "supported" and decide(-0.3, -0.1, 0.0, +1) == "contradicted"
    assert decide(0.1, 0.3, 0.55, -1) == "supported" and decide(-0.1, 0.3, 0.0, +1) == "inconclusive"
    assert decide(-0.2, 0.3, 0.0, 0, 0.5) == "supported" and decide(0.6, 0.9, 0.0, 0, 0.5) == "contradicted"
    assert decide(0.2, 0.7, 0.0, 0, 0.5) == "inconclusive" and decide(np.nan, np.nan, 0.0, 1) == "inconclusive"


def test_the_analysis_is_registered_before_the_results(tmp_path):
    config = {"claims": {"easy_datasets": ["digits-easy"], "margins": {"fd_ratio": 0.1}}}
    path = tmp_path / "tracking" / "claims-registration.json"
    assert registration_state(path, config)["state"] == "not registered"
    registered = register_analysis(path, config, results_exist=False)
    assert registered["code_sha256"] == analysis(config)["code_sha256"] and len(registered["code_sha256"]) == 64
    assert registration_state(path, config)["state"] == "pre-registered"
    changed = {"claims": {**config["claims"], "margins": {"fd_ratio": 0.3}}}  # a wider margin after the results
    assert register_analysis(path, changed, results_exist=True) == registered  # the first registration stands
    state = registration_state(path, changed)
    assert state["state"] == "changed after results"
    banner = registration_banner(pd.DataFrame({"analysis_state": [state["state"]],
                                               "analysis_registered_at": [state["registered_at"]]}))
    assert "changed after the first result" in banner
    late = tmp_path / "late.json"
    register_analysis(late, config, results_exist=True)
    assert registration_state(late, config)["state"] == "registered after results"
    code_changed = json.loads(path.read_text()) | {"code_sha256": "0" * 64}
    path.write_text(json.dumps(code_changed))
    assert registration_state(path, config)["state"] == "changed after results"
    assert registration_banner(pd.DataFrame({"analysis_state": ["pre-registered"],
                                             "analysis_registered_at": ["x"]})) == ""


def test_the_ledger_holds_its_false_verdict_rates_on_simulated_claims_sweeps():
    """benchmarks/ledger_calibration.py's small version: 200 simulated claims sweeps at every finding's null, with
    the parameters estimated from the claims sweep (committed beside the benchmark)."""
    from benchmarks.ledger_calibration import CALIBRATION_FILE, calibrate, _context, _sweep_config

    context = _context(_sweep_config())
    params = {**json.loads(CALIBRATION_FILE.read_text())["parameters"], "context": context,
              "coarse_chance": {name: role["coarse_chance"] for name, role in context["datasets"].items()
                                if role.get("coarse_chance")}}
    result = calibrate(params, 200, quick=True)
    assert result["family_holds"], result
    tested = [row for row in result["findings"] if row["testable"]]
    assert len(tested) >= 9
    for row in tested:
        assert row["holds"], row
