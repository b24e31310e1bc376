"""The label-free choice of method and K: its criteria on cases with a known answer, the picks and regrets by
hand, and the stage end to end on written runs."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import gaussian_blobs as blobs
from lightning_modules.clustering import SELECTION_CRITERIA
from lightning_modules.clustering.criteria import Consensus, Generalisation
from lightning_modules.clustering.selection import criterion_order, regret, run_selection, run_views

BASE = ("knn_agreement", "balance", "generalisation", "consensus")


def test_generalisation_rewards_a_labelling_a_linear_classifier_can_reproduce():
    x, truth = blobs()
    shuffled = np.random.default_rng(1).permutation(truth)  # the same cluster sizes, no structure
    records = [{"method": "m", "k": 4, "seed": 0, "assignments": labels, "knn_agreement": 0.0,
                "effective_clusters": 4.0} for labels in (truth, shuffled, np.zeros(len(truth), int))]
    good, noise, single = (Generalisation().score_run(view) for view in run_views(records, x))
    assert good > 0.95 and noise < 0.45  # about 1/4 by chance
    assert single == 1.0  # one cluster: trivially reproducible


def _configurations() -> pd.DataFrame:
    """Three configurations' criteria (means over seeds) and labelled metrics, as configuration_scores writes them."""
    table = pd.DataFrame({"method": ["a", "b", "c"], "k": [5, 10, 20], "seeds": [2, 2, 1],
                          "knn_agreement": [0.85, 0.7, 0.5], "balance": [0.8, 0.9, 0.95],
                          "generalisation": [0.6, 0.85, 0.7], "acc": [0.6, 0.8, np.nan], "nmi": [0.5, 0.8, 0.75]})
    table["consensus"] = Consensus().score_table(table)
    return table


def test_picks_and_regret_by_hand():
    configurations = _configurations()
    # ranks (1 = best): knn a1 b2 c3; balance c1 b2 a3; generalisation b1 c2 a3 -> means a 7/3, b 5/3, c 2
    assert configurations.consensus.tolist() == pytest.approx([-7 / 3, -5 / 3, -2])
    instances = {name: SELECTION_CRITERIA.get(name)() for name in BASE}
    picks = regret(configurations, instances, list(BASE)).set_index("criterion")
    assert picks.loc["knn_agreement", "method"] == "a"
    assert picks.loc["knn_agreement", "nmi_regret"] == pytest.approx(0.8 - 0.5)  # best NMI: b (0.8)
    assert picks.loc["knn_agreement", "acc_regret"] == pytest.approx(0.8 - 0.6)
    assert picks.loc["balance", "method"] == "c" and np.isnan(picks.loc["balance", "acc_regret"])  # ACC undefined
    assert picks.loc["generalisation", "method"] == "b" and picks.loc["generalisation", "nmi_regret"] == 0
    assert picks.loc["consensus", "method"] == "b"


def test_ties_go_to_the_first_configuration():
    table = pd.DataFrame({"method": ["b", "a"], "k": [5, 5], "seeds": [1, 1], "knn_agreement": [0.5, 0.5],
                          "acc": [0.1, 0.2], "nmi": [0.1, 0.2]})
    instances = {"knn_agreement": SELECTION_CRITERIA.get("knn_agreement")()}
    assert set(regret(table, instances, ["knn_agreement"]).method) == {"a"}


def test_the_default_criterion_is_the_first_pick_and_every_registered_one_follows():
    order = criterion_order("silhouette")
    assert order[0] == "silhouette" and sorted(order) == SELECTION_CRITERIA.names()


def test_the_stage_reads_runs_and_writes_its_record(tmp_path):
    from lightning_modules.core.io import save_npy

    x, truth = blobs(n_per=50)
    save_npy(tmp_path / "embeddings.npy", x)
    run_dirs = []
    for method, assignments in (("good", truth), ("noise", np.random.default_rng(0).integers(0, 4, len(truth)))):
        run = tmp_path / method
        run.mkdir()
        save_npy(run / "assignments.npy", assignments.astype(np.int32))
        sizes = np.bincount(assignments) / len(assignments)
        (run / "metrics.json").write_text(json.dumps({
            "method": method, "k": 4, "seed": 0, "knn_agreement": 0.9 if method == "good" else 0.3,
            "effective_clusters": float(np.exp(-(sizes * np.log(sizes)).sum())), "acc": 1.0 if method == "good" else 0.3,
            "nmi": 1.0 if method == "good" else 0.01}))
        run_dirs.append(run)
    record = run_selection(run_dirs, tmp_path / "embeddings.npy", tmp_path / "selection.json",
                           {"dataset": "d", "backbone": "b"}, "knn_agreement")
    assert json.loads((tmp_path / "selection.json").read_text())["dataset"] == "d"
    picks = {pick["criterion"]: pick for pick in record["picks"]}
    assert picks["generalisation"]["method"] == "good" and picks["generalisation"]["nmi_regret"] == 0
    with pytest.raises(ValueError, match="no clustering runs"):
        run_selection([], tmp_path / "embeddings.npy", tmp_path / "none.json", {"dataset": "d"}, "knn_agreement")
