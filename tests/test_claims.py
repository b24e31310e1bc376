"""The claims ledger: each finding on synthetic tables built to support it, contradict it and leave it undecided;
what a sweep cannot test is said, never raised; Holm's adjustment worked by hand."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lightning_modules.claims import dataset_roles
from lightning_modules.claims.ledger import CLAIMS, holm, ledger, one_sample


def verdict(tables: dict, claim: str, context: dict | None = None) -> pd.Series:
    """The ledger's row of `claim` (the other findings are not testable on these tables, so Holm leaves it alone)."""
    return ledger(tables, context).set_index("claim").loc[claim]


def test_holm_by_hand():
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the running maximum 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # 0.5 x 2 capped at 1; 0.9 raised to it (monotone)


def test_one_sample_statistics_and_the_constant_case():
    values = [1.0, 2.0, 3.0, 4.0]
    result = one_sample(values, threshold=1.0)
    assert result["effect"] == 2.5 and result["n"] == 4
    half = 3.182446305284263 * np.std(values, ddof=1) / 2  # t_{0.975, 3}
    assert result["low"] == pytest.approx(2.5 - half) and result["high"] == pytest.approx(2.5 + half)
    t = 1.5 / (np.std(values, ddof=1) / 2)  # (mean - threshold) / standard error
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(t, 3))
    assert one_sample([0.2, 0.2, 0.2])["p_value"] == 0.0 and one_sample([0.0, 0.0])["p_value"] == 1.0
    aurocs = one_sample([0.9, 1.0, 1.0], 0.5, bounds=(0.0, 1.0))  # the t interval passes 1; an AUROC cannot
    assert aurocs["high"] == 1.0 and aurocs["low"] == pytest.approx(29 / 30 - 4.302652729911275 * np.std(
        [0.9, 1.0, 1.0], ddof=1) / np.sqrt(3)) and aurocs["p_value"] == one_sample([0.9, 1.0, 1.0], 0.5)["p_value"]


def clustering_table(head_gain: float, noise: float, datasets=("digits",), seeds=5, seed=0) -> pd.DataFrame:
    """k-means and TEMI at K 10 and 20 on each dataset, TEMI `head_gain` ACC above k-means, plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in datasets:
        gain = head_gain(dataset) if callable(head_gain) else head_gain
        for k in (10, 20):
            for s in range(seeds):
                base = 0.6 + rng.normal(0, 0.01)
                rows.append({"dataset": dataset, "backbone": "pixels", "method": "kmeans", "k": k, "seed": s,
                             "acc": base})
                rows.append({"dataset": dataset, "backbone": "pixels", "method": "temi", "k": k, "seed": s,
                             "acc": base + gain + rng.normal(0, noise)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("gain, noise, expected", [(0.1, 0.01, "supported"), (-0.1, 0.01, "contradicted"),
                                                   (0.0, 0.05, "inconclusive")])
def test_heads_beat_kmeans(gain, noise, expected):
    row = verdict({"clustering": clustering_table(gain, noise, datasets=("a", "b", "c"))}, "C1")
    assert row.verdict == expected, row.to_dict()
    assert (row.low <= row.effect <= row.high) and "settings" in row.test


def test_heads_against_kmeans_on_balanced_benchmarks_only():
    table = clustering_table(lambda d: -0.2 if d == "digits-lt10" else 0.1, 0.01, datasets=("digits", "digits-lt10"))
    context = {"datasets": {"digits": {}, "digits-lt10": {"imbalanced_of": "digits"}}}
    row = verdict({"clustering": table}, "C1", context)
    assert row.verdict == "supported" and row.n == 2 and "left out: digits-lt10" in row.test  # digits at K 10, 20


def test_imbalance_needs_the_variant_and_then_compares_the_gaps():
    table = clustering_table(lambda d: 0.1 if d == "digits" else 0.0, 0.01, datasets=("digits", "digits-lt10"))
    assert verdict({"clustering": table}, "C2").verdict == "not testable"
    assert "no imbalanced variant" in verdict({"clustering": table}, "C2").reason
    config = {"datasets": {"digits": {"source": "digits", "split": "all", "coarse_groups": {"a": [0], "b": [1, 2]}},
                           "digits-lt10": {"source": "digits", "split": "all", "imbalance": {"ratio": 10}}}}
    context = dataset_roles(config)
    assert context["datasets"]["digits-lt10"]["imbalanced_of"] == "digits"
    assert context["datasets"]["digits"]["coarse_chance"] == pytest.approx((1 / 3) ** 2 + (2 / 3) ** 2)
    row = verdict({"clustering": table}, "C2", context)
    assert row.n == 2 and row.effect == pytest.approx(0.1, abs=0.02)  # two K; one value each
    assert row.verdict == "supported", row.to_dict()


def diffusion_table(cluster_fd: dict, none_fd: float, class_fd: float, seeds=6, floor=2.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(seeds):
        for cond, fd in {"none": none_fd, "class": class_fd, **cluster_fd}.items():
            k = int(cond.rsplit("k", 1)[1]) if cond.startswith("clusters-") else None
            rows.append({"dataset": "digits", "cond": cond, "method": "kmeans" if k else None, "k": k, "seed": s,
                         "fd_classifier": fd + rng.normal(0, 0.5), "fd_floor_classifier": floor})
    return pd.DataFrame(rows)


def test_cluster_conditioning_against_unconditional_and_classes():
    clusters = {"clusters-kmeans-k5": 30.0, "clusters-kmeans-k10": 20.0}
    better = diffusion_table(clusters, none_fd=40.0, class_fd=21.0)
    assert verdict({"diffusion": better}, "C6").verdict == "supported"
    assert "clusters-kmeans-k10" in verdict({"diffusion": better}, "C6").test
    assert verdict({"diffusion": better}, "C6b").verdict == "supported"  # within the floor of the classes
    worse = diffusion_table(clusters, none_fd=10.0, class_fd=5.0)
    assert verdict({"diffusion": worse}, "C6").verdict == "contradicted"
    assert verdict({"diffusion": worse}, "C6b").verdict == "contradicted"


def test_the_fd_optimal_k_against_the_bound():
    runs = diffusion_table({"clusters-kmeans-k5": 30.0, "clusters-kmeans-k10": 20.0, "clusters-kmeans-k40": 25.0},
                           40.0, 21.0)
    within = {"diffusion": runs, "cluster_bounds": pd.DataFrame({"dataset": ["digits"], "bound": [12]})}
    row = verdict(within, "C7")
    # per seed FD(k40) − FD(k10), the best on each side of the bound: 5 plus each seed's noise
    by_seed = runs.set_index(["cond", "seed"]).fd_classifier
    margins = [by_seed["clusters-kmeans-k40", s] - by_seed["clusters-kmeans-k10", s] for s in range(6)]
    assert row.effect == pytest.approx(np.mean(margins)) and row.n == 6
    assert row.p_value == pytest.approx(stats.ttest_1samp(margins, 0).pvalue) and row.verdict == "supported"
    beyond = {**within, "cluster_bounds": pd.DataFrame({"dataset": ["digits"], "bound": [7]})}  # k10 now above
    assert verdict(beyond, "C7").verdict == "contradicted"
    one_side = {**within, "cluster_bounds": pd.DataFrame({"dataset": ["digits"], "bound": [50]})}
    assert verdict(one_side, "C7").verdict == "not testable" and "by construction" in verdict(one_side, "C7").reason
    assert verdict({"diffusion": runs}, "C7").verdict == "not testable"


def test_the_sensitivity_against_the_best_negatives_drops_ties():
    rows = []
    for p in range(8):
        for name, sensitivity, auroc in [("rotations", 0.9, 0.95), ("permuted", 0.8, 0.90)]:
            rows.append({"dataset": "d", "backbone": "pixels", "ood": f"pair{p}", "scorer": f"selfdistill-{name}",
                         "fit_labels": "none", "sensitivity": sensitivity, "auroc": auroc})
        for name, sensitivity in [("rotations", 0.9), ("permuted", 0.8)]:  # far OOD: both at 1.0, a tie
            rows.append({"dataset": "d", "backbone": "pixels", "ood": f"noise{p}", "scorer": f"selfdistill-{name}",
                         "fit_labels": "none", "sensitivity": sensitivity, "auroc": 1.0})
    row = verdict({"ood": pd.DataFrame(rows)}, "C12")
    assert row.n == 8 and row.effect == 1.0 and row.p_value == pytest.approx(2 / 2**8)
    assert row.verdict == "supported"
    ties = pd.DataFrame(rows).query("ood.str.startswith('noise')", engine="python")
    assert verdict({"ood": ties}, "C12").verdict == "not testable"


def ood_table(knn_gain: float, pairs=8) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for p in range(pairs):
        base = 0.8 + rng.normal(0, 0.02)
        for scorer, labels, auroc in [("knn1", "none", base + knn_gain), ("mahalanobis", "none", base),
                                      ("probe-energy", "classes", base + 0.1)]:
            rows.append({"dataset": "d", "backbone": "pixels", "ood": f"pair{p}", "scorer": scorer,
                         "fit_labels": labels, "attack_style": None, "auroc": auroc + rng.normal(0, 0.005)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("gain, expected", [(0.05, "supported"), (-0.05, "contradicted"), (0.0, "inconclusive")])
def test_knn_as_the_best_unsupervised_score(gain, expected):
    assert verdict({"ood": ood_table(gain)}, "C9").verdict == expected


def test_probes_and_attacks():
    table = ood_table(0.0)
    assert verdict({"ood": table}, "C10").verdict == "supported"
    assert verdict({"ood": table}, "C11").verdict == "not testable"  # no attacked runs
    attacked = pd.DataFrame({"dataset": "d", "backbone": "pixels", "ood": [f"p{i}" for i in range(6)],
                             "scorer": "knn1-adv-smooth", "fit_labels": "none", "attack_style": "smooth",
                             "auroc": [0.1, 0.2, 0.15, 0.05, 0.12, 0.3], "auroc_clean": 0.9})
    row = verdict({"ood": pd.concat([table, attacked])}, "C11")
    assert row.effect < 0.5 and row.verdict == "supported"  # at or below chance: the detector is defeated
    # a second, harmless style changes nothing: the attacker picks the more effective one
    harmless = attacked.assign(scorer="knn1-adv-smooth-tv", attack_style="smooth-tv", auroc=0.99)
    both = verdict({"ood": pd.concat([table, attacked.assign(base_scorer="knn1"), harmless.assign(base_scorer="knn1")])},
                   "C11")
    assert both.effect == pytest.approx(row.effect) and both.n == 6


def test_a_sweep_without_tables_gets_reasons_not_errors():
    frame = ledger({}, {})
    assert list(frame.claim) == list(CLAIMS) and set(frame.verdict) == {"not testable"}
    assert frame.reason.str.len().gt(0).all()
    one_seed = clustering_table(0.1, 0.01, seeds=1)
    row = verdict({"clustering": one_seed[one_seed.k == 10]}, "C1")
    assert row.verdict == "inconclusive" and "one value" in row.reason


def test_tables_without_what_a_finding_needs():
    kmeans_only = clustering_table(0.1, 0.01)
    kmeans_only = kmeans_only[kmeans_only.method == "kmeans"]
    row = verdict({"clustering": kmeans_only}, "C1")
    assert row.verdict == "not testable" and "no clustering head" in row.reason
    no_acc = kmeans_only.drop(columns="acc")  # a dataset without labels has no ACC
    assert "no acc" in verdict({"clustering": no_acc}, "C1").reason
    odd = {"ood": pd.DataFrame({"scorer": ["knn1"], "auroc": [0.9], "fit_labels": [None], "ood": [1]})}
    assert verdict(odd, "C9").verdict == "not testable"  # no backbone column: said, not raised


def test_holm_runs_across_the_ledger():
    tables = {"clustering": clustering_table(0.1, 0.01, datasets=("a", "b", "c")), "ood": ood_table(0.05)}
    frame = ledger(tables).set_index("claim")
    tested = frame.p_value.notna()
    np.testing.assert_allclose(frame.p_holm[tested], holm(frame.p_value[tested]))
    assert tested.sum() >= 3
