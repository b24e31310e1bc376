"""Per-run metrics.json files -> one table per stage (`tables/<stage>.parquet`, one row per run)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from lightning_modules.io import atomic_path, read_json

CLUSTERING_COLUMNS = [
    "dataset", "backbone", "method", "k", "seed",
    "acc", "acc_majority", "nmi", "ari", "ami", "clusters_used",
    "inertia", "n_samples", "seconds",
]


def collect_table(metrics_files: Iterable[str | Path], columns: list[str]) -> pd.DataFrame:
    records = [read_json(path) for path in metrics_files]
    frame = pd.DataFrame.from_records(records, columns=columns)
    keys = [c for c in columns if c in ("dataset", "backbone", "method", "k", "seed", "ood", "scorer", "cond")]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def build_clustering_table(metrics_files: Iterable[str | Path], out_path: str | Path) -> pd.DataFrame:
    frame = collect_table(metrics_files, CLUSTERING_COLUMNS)
    write_table(frame, out_path)
    return frame
