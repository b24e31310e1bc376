"""Every label-free selection criterion on data with an obvious answer: well-separated Gaussian mixtures with
K = 3, 10 and 50, k-means run at K/2, K and 2K with two seeds (benchmarks.selection's helper, the runs as the
selection sees them). Where a criterion is known to lean one way, the test says so instead of hiding it."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.selection import method_views
from conftest import gaussian_blobs
from lightning_modules.clustering import SELECTION_CRITERIA
from lightning_modules.clustering.criteria import (KeptClustersKnee, MeanRank, Parsimonious, PredictionStrength,
                                                   VotedPick, disagreement, same_cluster_chance, subsample)
from lightning_modules.clustering.selection import configuration_scores, regret


@pytest.fixture(scope="module", params=[3, 10, 50])
def mixture(request):
    """(K, the configuration table at K/2, K, 2K, the picks)."""
    k = request.param
    x, _ = gaussian_blobs(n_per=30, centres=k, dims=32, spread=8.0, seed=k)
    views, _ = method_views(x, [max(2, k // 2), k, 2 * k])
    table, instances = configuration_scores(views)
    picks = regret(table, instances, SELECTION_CRITERIA.names()).set_index("criterion")
    return k, table.set_index("k"), picks


@pytest.mark.parametrize("criterion", ["knn_agreement_corrected", "silhouette", "umap_silhouette", "stability",
                                       "balance"])
def test_the_true_k_scores_best(mixture, criterion):
    k, table, _ = mixture
    assert table.loc[k, criterion] == table[criterion].max()


@pytest.mark.parametrize("criterion", ["knn_agreement_corrected", "silhouette", "umap_silhouette",
                                       "prediction_strength", "largest_of_picks"])
def test_the_pick_is_the_true_k(mixture, criterion):
    k, _, picks = mixture
    assert picks.loc[criterion, "k"] == k


def test_the_gap_statistic_sees_the_structure_and_its_rule_picks_k_while_clusters_are_large(mixture):
    k, table, picks = mixture
    assert table.loc[k, "gap"] > table.loc[max(2, k // 2), "gap"]
    if k <= 10:
        assert picks.loc["gap", "k"] == k
    else:  # 30 points a cluster at K = 50: the uniform references' W keeps falling faster, and the rule overshoots
        assert picks.loc["gap", "k"] >= k


def test_the_uncorrected_scores_lean_to_fewer_clusters(mixture):
    """kNN agreement and the generalisation score: merged clean clusters look as good as the true ones (the bias the
    chance correction removes), while splitting them is seen."""
    k, table, picks = mixture
    for criterion in ("knn_agreement", "generalisation"):
        assert table.loc[max(2, k // 2), criterion] >= table.loc[k, criterion] - 0.005 > table.loc[2 * k, criterion]
        assert picks.loc[criterion, "k"] <= k


def test_chance_agreement_and_matched_disagreement_by_hand():
    assert same_cluster_chance(np.array([0, 0, 1, 1])) == pytest.approx(2 * 2 / (4 * 3))  # 2 x (2 x 1) / 12
    assert same_cluster_chance(np.zeros(5, int)) == 1.0
    assert disagreement(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])) == 0.0  # relabelled: no disagreement
    assert disagreement(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3])) == pytest.approx(0.5)  # 2 of 4 matched


def test_prediction_strength_takes_the_largest_k_above_its_threshold():
    table = pd.DataFrame({"method": ["a"] * 3 + ["b"], "k": [2, 5, 9, 3], "ps": [1.0, 0.85, 0.4, 0.7]})
    assert PredictionStrength().pick(table, "ps") == 1  # a: K = 5 (largest >= 0.8); b: none, its best 0.7 < 0.85


def test_k_means_keeps_every_cluster_so_the_knee_does_not_score_it(mixture):
    _, table, picks = mixture
    assert (table.clusters_used == table.index).all() and table.kept_clusters_knee.isna().all()
    assert pd.isna(picks.loc["kept_clusters_knee", "k"])  # reported as not scored, not as a pick


def test_the_knee_of_the_kept_clusters_by_hand():
    """A head keeps K clusters up to 10, then about 10 (the knee); k-means keeps every one (no knee); a head that
    still keeps 95% at its largest K has not saturated (no knee)."""
    k = [2, 5, 10, 20, 40]
    table = pd.DataFrame({"method": ["head"] * 5 + ["kmeans"] * 5 + ["wide"] * 5, "k": k * 3,
                          "clusters_used": [2, 5, 10, 11, 12] + k + [2, 5, 10, 19, 38]})
    scores = KeptClustersKnee().score_table(table)
    # Kneedle by hand at K = 10: used (10 - 2) / (12 - 2) = 0.8, K (10 - 2) / 38 = 0.2105
    assert scores[2] == pytest.approx(0.8 - 8 / 38) and scores[:5].idxmax() == 2
    assert scores[5:].isna().all()


def test_the_voted_picks_by_hand():
    """s picks K = 4 (row 1), t K = 16 (row 3), u K = 2 of method b (row 4; its first best, tied with row 5), w has no
    score. The largest of s and t: K = 16; of s and u: K = 4; the median of s, t, u: K = 4; equal K goes to the more
    voted configuration."""
    nan = float("nan")
    table = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 2, "k": [2, 4, 8, 16, 2, 4],
                          "s": [0.1, 0.9, 0.5, 0.2, 0.0, 0.3], "t": [0.0, 0.1, 0.2, 0.3, 0.0, 0.1],
                          "u": [0.0, 0.0, 0.0, 0.0, 1.0, 1.0], "w": [nan] * 6})
    assert VotedPick("s", "t").pick(table, "x") == 3
    assert VotedPick("s", "u", "w").pick(table, "x") == 1  # w does not vote
    assert VotedPick("s", "t", "u", rule="median").pick(table, "x") == 1
    assert VotedPick("s", "t").score_table(table).tolist() == [0, 1, 0, 1, 0, 0]
    tied = table.assign(v=[0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # b at K = 4 (row 5) beside s's a at K = 4 (row 1)
    assert VotedPick("s", "v", "s").pick(tied, "x") == 1  # K 4 both; a's has two votes
    assert VotedPick("v", "s").pick(tied, "x") == 1  # one vote each: the first configuration
    assert VotedPick("w").pick(table, "x") == 0  # nothing voted: the first configuration
    with pytest.raises(ValueError, match="odd"):
        VotedPick("s", "t", rule="median")


def test_the_parsimony_rule_and_the_mean_rank_by_hand():
    table = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 2, "k": [2, 4, 8, 16, 2, 4],
                          "s": [0.1, 0.85, 0.9, 1.0, 0.5, 0.95], "t": [4.0, 3.0, 2.0, 1.0, 0.0, 5.0]})
    # a holds the best score (1.0 at K = 16); its range is 0.9: within 0.2 x 0.9 of the best, the smallest K is 4
    assert Parsimonious("s", 0.2).pick(table, "s") == 1
    assert Parsimonious("s", 0.05).pick(table, "s") == 3  # within 0.045: K = 16 alone
    # ranks (1 = best): s 6,4,3,1,5,2; t 2,3,4,5,6,1 -> means 4, 3.5, 3.5, 3, 5.5, 1.5
    assert MeanRank("s", "t").score_table(table).tolist() == [-4.0, -3.5, -3.5, -3.0, -5.5, -1.5]


def test_subsamples_spread_over_the_sample():
    positions = subsample(4000, 1000)
    assert len(np.unique(positions)) == 1000 and positions.min() < 40 and positions.max() > 3960


def test_the_benchmark_runs_and_the_schema_default_is_its_choice(tmp_path, monkeypatch):
    """`benchmarks.selection --quick` end to end; the committed full run's choice is the schema's default."""
    import json
    import sys

    import benchmarks.selection as benchmark
    from lightning_modules.core.checks import schema_defaults

    monkeypatch.setattr(benchmark, "QUICK_RESULT", tmp_path / "selection-quick.json")
    monkeypatch.setattr(sys, "argv", ["selection", "--quick"])
    benchmark.main()
    record = json.loads((tmp_path / "selection-quick.json").read_text())
    assert {pick["dataset"] for pick in record["picks"]} == {"digits-012", "iris", "mixture-k5-r1-sep0.3",
                                                              benchmark.fresh_benchmarks()[0].name}
    assert set(record["development"]).isdisjoint(record["held_out"])
    assert record["held_out"] == [benchmark.fresh_benchmarks()[0].name]  # measured on the fresh draw
    committed = json.loads(benchmark.RESULT.read_text())
    assert len(committed["development"]) + len(committed["held_out"]) >= 30
    assert schema_defaults("clustering")["selection_criterion"] == committed["default"]


def test_umaps_compilations_are_cached_on_disk_for_the_next_job():
    """core.compiled switches numba's cache on for umap-learn's jitted functions (declared without cache=True), so a
    job loads them instead of compiling again; a second call finds nothing left to switch on."""
    import umap  # noqa: F401 - its modules must be imported to be found
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    from lightning_modules.core.compiled import cache_compilations
    from lightning_modules.clustering.criteria import UmapSilhouette

    UmapSilhouette.project(np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32))  # switches it on
    assert cache_compilations("umap", "pynndescent") == 0
    from umap import umap_ as umap_module

    jitted = [value for value in vars(umap_module).values() if isinstance(value, CPUDispatcher)]
    assert jitted and not any(isinstance(function._cache, NullCache) for function in jitted)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_umap_silhouettes_map_is_umaps_own_bit_for_bit(digits_pixels, dtype):
    """UmapSilhouette hands UMAP the distances precomputed in one compiled loop (umap_input.py) instead of UMAP's
    Python call per pair: the map is the one UMAP computes from the rows itself."""
    import warnings

    import umap

    from lightning_modules.clustering.criteria import UmapSilhouette

    x = digits_pixels[0][np.random.default_rng(1).choice(len(digits_pixels[0]), 300, replace=False)].astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing new to warn about either
        ours = UmapSilhouette.project(x)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        own = umap.UMAP(n_neighbors=UmapSilhouette.N_NEIGHBORS, min_dist=0.0, n_components=UmapSilhouette.COMPONENTS,
                        random_state=0).fit_transform(x)
    np.testing.assert_array_equal(ours, own)
