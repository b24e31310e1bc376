"""What the diffusion report says: FD per condition as mean and 95% t interval over seeds (ddof = 1), and
one sentence per data set on which conditions beat unconditional: paired on seed, Holm over the report's family
(every condition against unconditional on every data set)."""

from __future__ import annotations

import pandas as pd

from lightning_modules.metrics.stats import adjust_family, mean_interval, paired_method_comparisons


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


FAMILY = "every condition against unconditional on every data set of this report"


def verdict(runs: pd.DataFrame, score: str) -> str:
    """One sentence per data set: the conditions whose FD is below (above) unconditional's, paired on seed, by
    Holm's p over FAMILY; the rest are within noise."""
    gains = runs.assign(method=runs.cond, gain=-runs[score])[["dataset", "seed", "method", "gain"]]
    comparisons = paired_method_comparisons(gains, "gain", "none", setting=("dataset",))
    comparisons = adjust_family(comparisons, FAMILY)
    sentences = []
    for dataset in runs.dataset.unique():
        group = comparisons[comparisons.dataset == dataset] if len(comparisons) else comparisons
        if group.empty or not (runs[(runs.dataset == dataset) & (runs.cond == "none")][score].notna().sum() >= 2):
            sentences.append(f"{dataset}: no unconditional runs over two or more seeds to compare against.")
            continue
        named = {word: ", ".join(group[group.verdict == word].method) for word in ("better", "worse")}
        text = f"{dataset}: " + (f"beats unconditional {score}: {named['better']}" if named["better"]
                                 else f"no condition beats unconditional {score}")
        if named["worse"]:
            text += f"; worse than it: {named['worse']}"
        rest = group[~group.verdict.isin(("better", "worse"))]
        if len(rest):
            text += f"; within noise: {', '.join(rest.method)}"
        sentences.append(text + ".")
    tests = int(comparisons.p_value.notna().sum()) if len(comparisons) else 0
    return " ".join(sentences) + (f" (Paired on seed; Holm over {tests} tests: {FAMILY}.)" if tests else "")
