"""A label-free choice of clustering method and K, with its regret measured afterwards.

Every finished run of one (dataset, backbone) is scored by criteria that use no labels, averaged over seeds
per configuration (method, K); each criterion picks the configuration it rates best. Only then are labels
read: the regret of a pick is how much lower its NMI (and ACC, where defined) is than the best configuration's
in hindsight. No criterion sees a label; the regret is the cost of not having them.

Criteria (higher is better for each):
- `knn_agreement`: share of kNN-graph neighbours in the same cluster (from the run's metrics);
- `balance`: effective clusters (exp of the entropy of cluster sizes) over K;
- `generalisation`: TURTLE's generalisation score, the accuracy of a linear classifier trained on one half of
  the embeddings with the run's own assignments as targets and tested on the other half (both directions).
  The classifier is a ridge (least-squares) one: one linear solve per half, so scoring every run of a sweep
  costs seconds; TURTLE trains its linear heads by gradient steps;
- `consensus`: the mean rank of the three.
The methods' own losses are not among them: a TEMI loss and a k-means inertia, or losses at different K, are
not on one scale."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CRITERIA = ("knn_agreement", "balance", "generalisation", "consensus")


def generalisation_score(embeddings: np.ndarray, assignments: np.ndarray, seed: int = 0,
                         max_rows: int = 4000) -> float:
    """Two-fold linear-probe accuracy on the run's own assignments (rows sampled to `max_rows`). A labelling a
    linear classifier cannot reproduce on unseen points generalises poorly."""
    from sklearn.linear_model import RidgeClassifier

    from lightning_modules.search.rows import l2_normalise

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(len(assignments))[:max_rows])  # sorted: memory-mapped rows read in order
    x = l2_normalise(embeddings[rows])
    y = np.asarray(assignments)[rows]
    halves = np.array_split(rng.permutation(len(y)), 2)
    scores = []
    for train, test in (halves, halves[::-1]):
        if len(np.unique(y[train])) < 2:  # one cluster in the training half: it predicts that cluster
            scores.append(float(np.mean(y[test] == y[train][0])))
            continue
        probe = RidgeClassifier(alpha=1.0).fit(x[train], y[train])
        scores.append(float(np.mean(probe.predict(x[test]) == y[test])))
    return float(np.mean(scores))


def configuration_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, k): the criteria's means over seeds, the consensus rank, and (for the regret only) the
    labelled metrics' means."""
    runs = runs.assign(balance=runs.effective_clusters / runs.k)
    labelled = [c for c in ("acc", "nmi") if c in runs]
    grouped = runs.groupby(["method", "k"], as_index=False)
    table = grouped[["knn_agreement", "balance", "generalisation", *labelled]].mean()
    table["seeds"] = grouped.size()["size"].to_numpy()
    ranks = table[["knn_agreement", "balance", "generalisation"]].rank(ascending=False, method="average")
    table["consensus"] = -ranks.mean(axis=1)  # higher is better, as for the others
    return table


def regret(configurations: pd.DataFrame) -> pd.DataFrame:
    """One row per criterion: its pick, and the pick's NMI/ACC against the best configuration in hindsight.
    Ties in a criterion go to the first configuration in (method, k) order."""
    rows = []
    ordered = configurations.sort_values(["method", "k"], kind="stable").reset_index(drop=True)
    for criterion in CRITERIA:
        pick = ordered.loc[ordered[criterion].idxmax()]
        row = {"criterion": criterion, "method": pick.method, "k": int(pick.k), "score": float(pick[criterion])}
        for metric in ("nmi", "acc"):
            if metric not in ordered:
                continue
            best = ordered.loc[ordered[metric].idxmax()] if ordered[metric].notna().any() else None
            row[f"{metric}"] = float(pick[metric])
            row[f"best_{metric}"] = np.nan if best is None else float(best[metric])
            row[f"best_{metric}_run"] = None if best is None else f"{best.method} k{int(best.k)}"
            row[f"{metric}_regret"] = row[f"best_{metric}"] - row[metric]
        rows.append(row)
    return pd.DataFrame(rows)


def select_runs(run_dirs: list, embeddings: np.ndarray, seed: int = 0) -> dict:
    """Score every run (its metrics.json and assignments.npy), pick per criterion, measure the regret."""
    from pathlib import Path

    from lightning_modules.core.io import load_npy, read_json

    records = []
    for run_dir in run_dirs:
        metrics = read_json(Path(run_dir) / "metrics.json")
        assignments = load_npy(Path(run_dir) / "assignments.npy", mmap=False)
        records.append({"method": metrics["method"], "k": int(metrics["k"]), "seed": int(metrics["seed"]),
                        "knn_agreement": metrics["knn_agreement"], "effective_clusters": metrics["effective_clusters"],
                        "generalisation": generalisation_score(embeddings, assignments, seed),
                        "acc": metrics.get("acc"), "nmi": metrics.get("nmi")})
    runs = pd.DataFrame.from_records(records).astype({"acc": float, "nmi": float})
    configurations = configuration_scores(runs)
    return {"runs": runs.to_dict("records"), "configurations": configurations.to_dict("records"),
            "picks": regret(configurations).to_dict("records")}


def run_selection(run_dirs: list, embeddings_path, out_path, identity: dict, seed: int = 0) -> dict:
    """The rule's job: score and pick over `run_dirs`, write `selection.json` (dataset, backbone, runs,
    configurations, picks)."""
    from lightning_modules.core.io import load_npy, write_json

    if not run_dirs:
        raise ValueError(f"no clustering runs for {identity}: nothing to select from")
    record = {**identity, "criteria": list(CRITERIA), **select_runs(run_dirs, load_npy(embeddings_path), seed)}
    write_json(out_path, record)
    best = {pick["criterion"]: pick for pick in record["picks"]}["consensus"]
    log.info("label-free pick (consensus): %s k=%d; NMI regret %.3f", best["method"], best["k"],
             best.get("nmi_regret", float("nan")))
    return record
