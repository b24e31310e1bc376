"""What the diffusion report says: FD per condition as mean and 95% t interval over seeds (ddof = 1), and
one sentence per data set on whether class and cluster conditioning beat unconditional beyond the intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lightning_modules.metrics.stats import mean_interval


def summarise(runs: pd.DataFrame, score: str, level: float = 0.95) -> pd.DataFrame:
    """One row per dataset × condition: seeds, mean, low, high of `score` (and of class consistency)."""
    rows = []
    for (dataset, cond), group in runs.groupby(["dataset", "cond"], sort=False):
        mean, low, high = mean_interval(group[score], level)
        row = {"dataset": dataset, "cond": cond, "method": group.method.iloc[0], "k": group.k.iloc[0],
               "seeds": int(group[score].notna().sum()), "mean": mean, "low": low, "high": high}
        if "class_consistency" in group:
            row["class_consistency"] = mean_interval(group.class_consistency, level)[0]
        floor = f"fd_floor_{score.removeprefix('fd_')}"
        if floor in group:
            row["floor"] = float(group[floor].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(summary: pd.DataFrame, score: str) -> str:
    """One sentence per data set: which conditions have an interval wholly below unconditional's."""
    sentences = []
    for dataset, group in summary.groupby("dataset", sort=False):
        none = group[group.cond == "none"]
        if none.empty or not np.isfinite(none.high.iloc[0]):
            sentences.append(f"{dataset}: no unconditional run with an interval (one seed?) to compare against.")
            continue
        baseline = none.iloc[0]
        others = group[group.cond != "none"]
        better = others[others.high < baseline.low]
        worse = others[others.low > baseline.high]
        text = f"{dataset}: unconditional {score} {baseline['mean']:.3g} [{baseline.low:.3g}, {baseline.high:.3g}]; "
        text += (f"beaten beyond the 95% intervals by {', '.join(better.cond)}" if len(better)
                 else "no condition beats it beyond the 95% intervals")
        if len(worse):
            text += f"; worse beyond them: {', '.join(worse.cond)}"
        overlapping = others[~others.cond.isin(set(better.cond) | set(worse.cond))]
        if len(overlapping):
            text += f"; within the intervals: {', '.join(overlapping.cond)}"
        sentences.append(text + ".")
    return " ".join(sentences)
