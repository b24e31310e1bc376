"""A label-free choice of clustering method and K, with its regret measured afterwards.

Every finished run of one (dataset, backbone) is seen by criteria that use no labels (the SELECTION_CRITERIA
registry, lightning_modules/clustering/criteria.py), per configuration (method, K) over its seeds; each criterion
picks the configuration it rates best. Only then are labels read: the regret of a pick is how much lower its NMI
(and ACC, where defined) is than the best configuration's in hindsight. No criterion sees a label; the regret is
the cost of not having them. The default criterion (`clustering.selection_criterion`) was chosen on the first
draw of benchmarks/selection.py's data sets and is measured on its fresh draw.
The methods' own losses are not criteria: a TEMI loss and a k-means inertia, or losses at different K, are not on
one scale."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lightning_modules.clustering import SELECTION_CRITERIA
from lightning_modules.clustering.criteria import RunView

log = logging.getLogger(__name__)

SAMPLE_ROWS = 4000  # the rows the sample-based criteria read (generalisation, silhouette, stability, ...)
LABELLED = ("acc", "nmi")  # read for the regret only, after every pick


def criterion_order(default: str) -> list[str]:
    """Every registered criterion, the default first (the selection's first pick is the one the sweep uses)."""
    return [default, *(name for name in SELECTION_CRITERIA.names() if name != default)]


def sample_rows(n: int, seed: int = 0, size: int = SAMPLE_ROWS) -> np.ndarray:
    """The sorted rows the criteria read (memory-mapped rows are read in order)."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def run_views(records: list[dict], embeddings: np.ndarray, seed: int = 0) -> list[RunView]:
    """Each run (`method`, `k`, `seed`, `assignments`, `knn_agreement`, `effective_clusters`) as its criteria see it,
    every run on the same sample of rows."""
    from lightning_modules.search.rows import l2_normalise

    rows = sample_rows(len(embeddings), seed)
    x = l2_normalise(embeddings[rows])
    return [RunView(method=r["method"], k=int(r["k"]), seed=int(r["seed"]), assignments=np.asarray(r["assignments"]),
                    rows=rows, x=x, knn_agreement=float(r["knn_agreement"]),
                    effective_clusters=float(r["effective_clusters"])) for r in records]


def configuration_scores(views: list[RunView], labelled: pd.DataFrame | None = None,
                         criteria: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Per (method, k) in that order: each criterion's score, the seeds, the clusters used (label-free; mean over
    seeds) and (for the regret only) the means of the labelled metrics in `labelled` (columns method, k, seed, acc,
    nmi). Returns the table and the criteria objects that scored it (a criterion with its own pick rule keeps what
    it needs for it)."""
    criteria = criteria or SELECTION_CRITERIA.names()
    instances = {name: SELECTION_CRITERIA.get(name)() for name in criteria}
    groups: dict[tuple[str, int], list[RunView]] = {}
    for view in sorted(views, key=lambda v: (v.method, v.k, v.seed)):
        groups.setdefault((view.method, view.k), []).append(view)
    rows = []
    for (method, k), runs in groups.items():
        row = {"method": method, "k": k, "seeds": len(runs),
               "clusters_used": float(np.mean([len(np.unique(run.assignments)) for run in runs]))}
        row.update({name: criterion.score(runs) for name, criterion in instances.items() if not criterion.table_level})
        rows.append(row)
    table = pd.DataFrame(rows)
    for name, criterion in instances.items():
        if criterion.table_level:
            table[name] = criterion.score_table(table)
    if labelled is not None:
        means = labelled.groupby(["method", "k"], as_index=False)[[c for c in LABELLED if c in labelled]].mean()
        table = table.merge(means, on=["method", "k"], how="left")
    return table, instances


def regret(configurations: pd.DataFrame, instances: dict, order: list[str]) -> pd.DataFrame:
    """One row per criterion (in `order`): its pick, and the pick's NMI/ACC against the best configuration in
    hindsight. Ties go to the first configuration in (method, k) order."""
    ordered = configurations.sort_values(["method", "k"], kind="stable").reset_index(drop=True)
    rows = []
    for criterion in order:
        if ordered[criterion].isna().all():  # e.g. stability with one seed
            rows.append({"criterion": criterion, "method": None, "k": None, "score": np.nan})
            continue
        pick = ordered.loc[instances[criterion].pick(ordered.fillna({criterion: -np.inf}), criterion)]
        row = {"criterion": criterion, "method": pick.method, "k": int(pick.k), "score": float(pick[criterion])}
        for metric in LABELLED:
            if metric not in ordered:
                continue
            best = ordered.loc[ordered[metric].idxmax()] if ordered[metric].notna().any() else None
            row[metric] = float(pick[metric])
            row[f"best_{metric}"] = np.nan if best is None else float(best[metric])
            row[f"best_{metric}_run"] = None if best is None else f"{best.method} k{int(best.k)}"
            row[f"{metric}_regret"] = row[f"best_{metric}"] - row[metric]
        rows.append(row)
    picks = pd.DataFrame(rows)
    picks["k"] = pd.Series([row["k"] for row in rows], dtype=object)  # K stays an integer beside a criterion's None
    return picks


def select_runs(run_dirs: list, embeddings: np.ndarray, default: str, seed: int = 0) -> dict:
    """Score every run (its metrics.json and assignments.npy), pick per criterion, measure the regret."""
    from pathlib import Path

    from lightning_modules.core.io import load_npy, read_json

    records, labelled = [], []
    for run_dir in run_dirs:
        metrics = read_json(Path(run_dir) / "metrics.json")
        identity = {"method": metrics["method"], "k": int(metrics["k"]), "seed": int(metrics["seed"])}
        records.append({**identity, "assignments": load_npy(Path(run_dir) / "assignments.npy", mmap=False),
                        "knn_agreement": metrics["knn_agreement"], "effective_clusters": metrics["effective_clusters"]})
        labelled.append({**identity, **{metric: metrics.get(metric) for metric in LABELLED}})
    labelled = pd.DataFrame(labelled).astype({metric: float for metric in LABELLED})
    configurations, instances = configuration_scores(run_views(records, embeddings, seed), labelled)
    runs = [{key: value for key, value in record.items() if key != "assignments"} for record in records]
    return {"runs": runs, "configurations": configurations.to_dict("records"),
            "picks": regret(configurations, instances, criterion_order(default)).to_dict("records")}


def run_selection(run_dirs: list, embeddings_path, out_path, identity: dict, default: str, seed: int = 0) -> dict:
    """The rule's job: score and pick over `run_dirs`, write `selection.json` (dataset, backbone, runs,
    configurations, picks: the default criterion's first)."""
    from lightning_modules.core.io import load_npy, write_json

    if not run_dirs:
        raise ValueError(f"no clustering runs for {identity}: nothing to select from")
    record = {**identity, "criteria": criterion_order(default),
              **select_runs(run_dirs, load_npy(embeddings_path), default, seed)}
    write_json(out_path, record)
    pick = record["picks"][0]
    log.info("label-free pick (%s): %s k=%s; NMI regret %.3f", default, pick["method"], pick["k"],
             pick.get("nmi_regret", float("nan")))
    return record
