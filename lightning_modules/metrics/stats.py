"""Statistics shared by every report and the claims ledger, in one place: a mean against a threshold with its Student
t interval (scipy's `ttest_1samp` and its `confidence_interval`), paired comparisons of two methods over seeds,
Holm's adjustment over a named family (statsmodels) and the word a comparison earns from its adjusted p.

Values without any spread have no t statistic (0 / 0). Below MIN_N_WITHOUT_SPREAD they decide nothing; from there
on they are tested by the exact sign test, whose p (2 x 0.5^n) and interval (the one value, or everything) are
dual — never p = 0 at n = 2."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
LEVEL = 0.95
INTERVAL_NOTE = "95% Student t interval over seeds (ddof = 1)"
# the smallest n at which an exact sign test can reach p < ALPHA: 2 x 0.5^6 = 0.031 (0.0625 at n = 5)
MIN_N_WITHOUT_SPREAD = 6


@dataclass(frozen=True)
class MeanTest:
    """The mean of `values` against `threshold`: two-sided p and an interval at any level, dual to each other."""

    values: np.ndarray
    threshold: float = 0.0
    bounds: tuple[float, float] = (-np.inf, np.inf)  # the metric's range (an AUROC's [0, 1]): intervals are clipped

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def effect(self) -> float:
        return float(self.values.mean()) if self.n else np.nan

    @property
    def spread(self) -> bool:
        return self.n >= 2 and bool((self.values != self.values[0]).any())

    @property
    def no_variance(self) -> bool:
        """Too few values without spread to test anything (the reason a verdict says so)."""
        return self.n >= 2 and not self.spread and self.n < MIN_N_WITHOUT_SPREAD

    @cached_property
    def _ttest(self):
        return stats.ttest_1samp(self.values, self.threshold)

    @property
    def p_value(self) -> float:
        if self.spread:
            return float(self._ttest.pvalue)
        if self.n < MIN_N_WITHOUT_SPREAD:
            return np.nan
        # no spread: the exact sign test (all n values on one side of the threshold, or all at it)
        return 1.0 if self.values[0] == self.threshold else min(1.0, 2 * 0.5 ** self.n)

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        if self.spread:
            low, high = self._ttest.confidence_interval(level)
        elif np.isfinite(self.p_value):  # the sign test's: the one value where it rejects at 1 - level, else all
            low = high = float(self.values[0]) if self.p_value < 1 - level else np.nan
        else:
            low = high = np.nan
        if not np.isfinite(low):
            return np.nan, np.nan
        low, high = np.clip([low, high], *self.bounds)
        return float(low), float(high)


def mean_test(values, threshold: float = 0.0, bounds: tuple[float, float] = (-np.inf, np.inf)) -> MeanTest:
    """A MeanTest of the finite `values` (NaN, e.g. an ACC undefined at K above the classes, is dropped)."""
    values = np.asarray(values, dtype=float)
    return MeanTest(values[np.isfinite(values)], float(threshold), bounds)


def mean_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of mean_test: Student's t interval with ddof = 1; one value or no spread: NaN bounds."""
    test = mean_test(values)
    return (test.effect, *test.interval(level))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment (statsmodels); NaN stays NaN and does not count as a test."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = np.isfinite(p)
    if tested.any():
        adjusted[tested] = multipletests(p[tested], alpha=ALPHA, method="holm")[1]
    return adjusted


def paired_difference(a, b, level: float = LEVEL) -> dict:
    """a − b over pairs (seeds) where both are finite: n, mean difference, its t interval and the two-sided
    paired t-test's p-value (a one-sample test of the differences, as scipy's ttest_rel)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = np.isfinite(a) & np.isfinite(b)
    test = mean_test(a[both] - b[both])
    low, high = test.interval(level)
    return {"n": test.n, "difference": test.effect, "low": low, "high": high, "p_value": test.p_value}


def verdict_word(comparison: dict) -> str:
    """'better' / 'worse' when the (family-adjusted, where given) p is below ALPHA, 'within noise' otherwise;
    'one seed' or 'no variance' when nothing can be tested."""
    if comparison["n"] < 2:
        return "one seed"
    p = comparison.get("p_holm", comparison["p_value"])
    if not np.isfinite(p):
        return "no variance"
    if p < ALPHA:
        return "better" if comparison["difference"] > 0 else "worse"
    return "within noise"


def adjust_family(comparisons: pd.DataFrame, family: str) -> pd.DataFrame:
    """Holm over every comparison of `comparisons` (one report's family, named in `family`): `p_holm`, and the
    verdicts read from it."""
    if comparisons.empty:
        return comparisons
    adjusted = comparisons.assign(p_holm=holm(comparisons.p_value), family=family)
    adjusted["verdict"] = [verdict_word(row) for row in adjusted.to_dict("records")]
    return adjusted


def paired_method_comparisons(runs: pd.DataFrame, metric: str, reference: str,
                              setting: tuple[str, ...] = ("dataset", "backbone", "k")) -> pd.DataFrame:
    """Every method against `reference` in each setting, paired on the seeds both ran: one row per
    (setting, method) with the mean difference (method − reference), its interval, the raw p and its verdict
    (`adjust_family` re-reads the verdicts from Holm's p over the report's family)."""
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
    `digits / pixels / k=10 (acc, vs kmeans): temi +0.068 [0.031, 0.105] better (Holm p 0.03, 3 seeds); ...`
    (the raw p where no family was adjusted)."""
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
            elif row.verdict == "no variance":
                parts.append(f"{row.method} {row.difference:+.3f} (no variance over {row.n} seeds: untested)")
            else:
                p = (f"Holm p {row.p_holm:.2g}" if "p_holm" in group else f"p {row.p_value:.2g}")
                parts.append(f"{row.method} {row.difference:+.3f} [{row.low:+.3f}, {row.high:+.3f}] {row.verdict} "
                             f"({p}, {row.n} seeds)")
        lines.append(head + "; ".join(parts))
    return lines
