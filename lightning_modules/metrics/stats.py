"""Statistics over seeds, shared by every report: mean with a Student t interval (ddof = 1), and paired
comparisons of two methods on the seeds both ran (mean difference, its t interval, the paired t-test)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

INTERVAL_NOTE = "95% Student t interval over seeds (ddof = 1)"


def mean_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval with ddof = 1; NaNs are dropped; one value gives NaN bounds."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def paired_difference(a, b, level: float = 0.95) -> dict:
    """a − b over pairs (seeds) where both are finite: n, mean difference, its t interval and the two-sided
    paired t-test's p-value (scipy's ttest_rel). Identical pairs give a zero-width interval and p = 1; exactly
    equal non-zero differences p = 0. Differences that are merely tiny (1e-9, 2e-9, ...) are tested as any others."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = np.isfinite(a) & np.isfinite(b)
    differences = a[both] - b[both]
    mean, low, high = mean_interval(differences, level)
    if len(differences) < 2:
        p_value = np.nan
    elif (differences == differences[0]).all():  # no spread at all: the t statistic is undefined (only then)
        p_value = 1.0 if differences[0] == 0 else 0.0
        low = high = float(differences[0])
    else:
        p_value = float(stats.ttest_rel(a[both], b[both]).pvalue)
    return {"n": int(len(differences)), "difference": mean, "low": low, "high": high, "p_value": p_value}


def verdict_word(comparison: dict) -> str:
    """'better' / 'worse' when the interval excludes zero, 'within noise' when it covers it, 'one seed' when
    there is none."""
    if comparison["n"] < 2 or not np.isfinite(comparison["low"]):
        return "one seed"
    if comparison["low"] > 0:
        return "better"
    if comparison["high"] < 0:
        return "worse"
    return "within noise"


def paired_method_comparisons(runs: pd.DataFrame, metric: str, reference: str,
                              setting: tuple[str, ...] = ("dataset", "backbone", "k")) -> pd.DataFrame:
    """Every method against `reference` in each setting, paired on the seeds both ran: one row per
    (setting, method) with the mean difference (method − reference), its interval, p and the verdict."""
    rows = []
    for key, group in runs.groupby(list(setting), dropna=False):
        by_seed = group.pivot_table(index="seed", columns="method", values=metric, aggfunc="first")
        if reference not in by_seed:
            continue
        for method in by_seed.columns:
            if method == reference:
                continue
            comparison = paired_difference(by_seed[method], by_seed[reference])
            if comparison["n"] == 0:
                continue
            rows.append({**dict(zip(setting, key if isinstance(key, tuple) else (key,))), "method": method,
                         "reference": reference, "metric": metric, **comparison,
                         "verdict": verdict_word(comparison)})
    return pd.DataFrame(rows)


def summarise_seeds(runs: pd.DataFrame, metrics: list[str], by: list[str]) -> pd.DataFrame:
    """Mean, low and high per group and metric (`<metric>`, `<metric>_low`, `<metric>_high`), and `seeds`."""
    rows = []
    for key, group in runs.groupby(by, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["seeds"] = int(group.seed.nunique()) if "seed" in group else len(group)
        for metric in metrics:
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = mean_interval(group[metric])
        rows.append(row)
    return pd.DataFrame(rows)


def describe_comparisons(comparisons: pd.DataFrame, setting: tuple[str, ...] = ("dataset", "backbone", "k")) -> list[str]:
    """One line per setting: each method's paired difference from the reference, best first, e.g.
    `digits / pixels / k=10 (acc, vs kmeans): temi +0.068 [0.031, 0.105] better (p 0.01, 3 seeds); dec ... within noise`."""
    lines = []
    if comparisons.empty:
        return lines
    for key, group in comparisons.groupby(list(setting), sort=True):
        names = [f"{name}={value}" if name == "k" else str(value)
                 for name, value in zip(setting, key if isinstance(key, tuple) else (key,))]
        head = f"{' / '.join(names)} ({group.metric.iloc[0]}, vs {group.reference.iloc[0]}): "
        parts = []
        for row in group.sort_values("difference", ascending=False).itertuples():
            if row.verdict == "one seed":
                parts.append(f"{row.method} {row.difference:+.3f} (one seed: no interval)")
            else:
                parts.append(f"{row.method} {row.difference:+.3f} [{row.low:+.3f}, {row.high:+.3f}] {row.verdict} "
                             f"(p {row.p_value:.2g}, {row.n} seeds)")
        lines.append(head + "; ".join(parts))
    return lines
