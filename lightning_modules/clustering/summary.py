"""What the clustering report says first ("who wins, by how much"): every method against k-means (or the first
method where k-means did not run) at every setting, paired on the seeds both ran, in ACC (NMI where ACC is
undefined because K exceeds the number of classes), Holm over the report's family. The report and the docs'
figures both call it."""

from __future__ import annotations

import pandas as pd

from lightning_modules.metrics.stats import adjust_family, paired_method_comparisons


def reference_method(runs: pd.DataFrame) -> str:
    return "kmeans" if "kmeans" in set(runs.method) else sorted(runs.method.unique())[0]


def method_comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per setting x method: the paired difference from the reference, its interval, Holm's p and the
    verdict (`metrics.stats`)."""
    reference = reference_method(runs)
    comparisons = pd.concat([paired_method_comparisons(runs[runs.acc.notna()], "acc", reference),
                             paired_method_comparisons(runs[runs.acc.isna()], "nmi", reference)], ignore_index=True)
    return adjust_family(comparisons, f"every method against {reference} at every setting of this report")
