"""Per-run metrics.json files -> one table per stage (`tables/<stage>.parquet`, one row per run)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import pandas as pd

from lightning_modules.core.io import atomic_path, read_json
from lightning_modules.core.layout import parse
from lightning_modules.analysis.published import PUBLISHED_FILE, annotate, load_published

CLUSTERING_COLUMNS = [
    "dataset", "backbone", "method", "k", "seed",
    "acc", "acc_majority", "nmi", "ari", "ami", "clusters_used", "acc_top2", "coarse_acc_2nd",
    "effective_clusters", "knn_agreement", "inertia", "train_loss", "selected_head", "n_samples", "seconds",
]
OOD_COLUMNS = [
    "dataset", "backbone", "ood", "in", "out", "scorer", "base_scorer", "attack_style", "fit_labels",
    "auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_openood",
    "auroc_low", "auroc_high", "aupr_in_low", "aupr_in_high", "aupr_out_low", "aupr_out_high",
    "fpr95_low", "fpr95_high", "fpr95_openood_low", "fpr95_openood_high", "auroc_clean", "fpr95_clean",
    "sensitivity", "n_fit", "n_id", "n_ood", "train_loss", "seconds",
]
PROBE_COLUMNS = ["dataset", "backbone", "source", "n_fit", "n_classes", "train_loss", "train_accuracy",
                 "pseudo_label_accuracy", "seconds"]
DIFFUSION_COLUMNS = ["dataset", "cond", "method", "k", "seed", "uses_labels", "scores", "class_consistency",
                     "train_steps", "n_samples", "reference_images", "network_evaluations", "train_seconds",
                     "sample_seconds", "feature_backbone"]
SELECTION_COLUMNS = ["dataset", "backbone", "criterion", "method", "k", "score", "nmi", "best_nmi", "best_nmi_run",
                     "nmi_regret", "acc", "best_acc", "best_acc_run", "acc_regret"]
SELECTION_CURVE_COLUMNS = ["dataset", "backbone", "criterion", "default", "method", "k", "score", "picked"]
BOUND_COLUMNS = ["dataset", "backbone", "k_trained", "bound", "clusters_used", "effective_clusters", "seed"]


def collect_table(metrics_files: Iterable[str | Path], columns: list[str]) -> pd.DataFrame:
    records = [{**_identity(path), **read_json(path)} for path in metrics_files]
    frame = pd.DataFrame.from_records(records, columns=columns)
    keys = [c for c in columns if c in ("dataset", "backbone", "method", "k", "seed", "ood", "scorer", "cond",
                                        "source")]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _identity(path: str | Path) -> dict:
    """dataset and backbone of a result file, from its folder (for files that do not say)."""
    record = parse(path)
    return {key: value for key, value in dataclasses.asdict(record).items() if key in ("dataset", "backbone")} if record else {}


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def build_clustering_table(metrics_files: Iterable[str | Path], out_path: str | Path,
                           published=PUBLISHED_FILE) -> pd.DataFrame:
    """One row per clustering run, with `published_<metric>` / `delta_<metric>` where a published setting matches."""
    frame = annotate(collect_table(metrics_files, CLUSTERING_COLUMNS), "clustering", load_published(published))
    write_table(frame, out_path)
    return frame


def build_selection_table(selection_files: Iterable[str | Path], out_path: str | Path) -> pd.DataFrame:
    """One row per dataset x backbone x label-free criterion: the configuration it picked and its regret."""
    rows = [{"dataset": record["dataset"], "backbone": record["backbone"], **pick}
            for record in map(read_json, selection_files) for pick in record["picks"]]
    frame = pd.DataFrame.from_records(rows, columns=SELECTION_COLUMNS)
    write_table(frame, out_path)
    return frame


def build_selection_curves(selection_files: Iterable[str | Path], out_path: str | Path) -> pd.DataFrame:
    """One row per dataset x backbone x configuration (method, K) x criterion: the criterion's score (the curves
    the clustering report draws, each pick marked), and whether that criterion picked it."""
    rows = []
    for record in map(read_json, selection_files):
        picked = {(pick["criterion"], pick["method"], pick["k"]) for pick in record["picks"]}
        for configuration in record["configurations"]:
            for criterion in record["criteria"]:
                rows.append({"dataset": record["dataset"], "backbone": record["backbone"], "criterion": criterion,
                             "default": criterion == record["criteria"][0], "method": configuration["method"],
                             "k": int(configuration["k"]), "score": configuration[criterion],
                             "picked": (criterion, configuration["method"], int(configuration["k"])) in picked})
    frame = pd.DataFrame.from_records(rows, columns=SELECTION_CURVE_COLUMNS)
    write_table(frame, out_path)
    return frame


def build_bounds_table(bound_files: Iterable[str | Path], out_path: str | Path) -> pd.DataFrame:
    """One row per dataset x backbone with an upper cluster bound (an empty table when none was asked for)."""
    frame = collect_table(bound_files, BOUND_COLUMNS)
    write_table(frame, out_path)
    return frame


def build_ood_table(metrics_files: Iterable[str | Path], out_path: str | Path,
                    published=PUBLISHED_FILE) -> pd.DataFrame:
    """One row per pair x backbone x scorer; `*_clean` columns hold an attacked row's metrics on the same
    OOD images before the attack; `published_<metric>` / `delta_<metric>` where a published setting matches."""
    frame = annotate(collect_table(metrics_files, OOD_COLUMNS), "ood", load_published(published))
    write_table(frame, out_path)
    return frame


def build_probe_table(probe_files: Iterable[str | Path], out_path: str | Path) -> pd.DataFrame:
    """One row per shared linear probe (ID dataset x backbone x label source): each is its own MLflow run."""
    frame = collect_table(probe_files, PROBE_COLUMNS)
    write_table(frame, out_path)
    return frame


def build_diffusion_table(metrics_files: Iterable[str | Path], out_path: str | Path,
                          published=PUBLISHED_FILE) -> pd.DataFrame:
    """One row per dataset x condition x seed; `fd_<net>`, `fd_floor_<net>`, `kid_<net>`, `kid_std_<net>` for
    each feature network the runs were scored in (`feature_backbone` names the backbone of `*_backbone`)."""
    metrics_files = list(metrics_files)
    scores = sorted({name for path in metrics_files for name in read_json(path) if name.startswith(("fd_", "kid_"))})
    columns = [name for column in DIFFUSION_COLUMNS for name in (scores if column == "scores" else [column])]
    frame = annotate(collect_table(metrics_files, columns), "diffusion", load_published(published))
    write_table(frame, out_path)
    return frame
