"""The docs' result figures, rendered from the files the runs wrote when the docs are built, never typed.

A page asks for one with a marker line, `<!-- figure: NAME -->` (`reference.on_page_markdown` replaces it; an unknown
name fails the strict build); `reference.figures_page` shows them all. Each figure names the file it read and its
date, and says which command writes it where the file is missing (a fresh checkout has no `results/`): the demo's
tables (`make demo`), every `make bench` table with the date, cores and GEMM peak it was measured with, and the
committed selection and ledger-calibration benchmarks (`benchmarks/*.json`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from pathlib import Path

from lightning_modules.core.checks import results_dir_of
from lightning_modules.core.project import ROOT

# the demo's results folder (CLUSTERLAB_DOCS_RESULTS: another one, as the browser test builds the docs on its demo)
RESULTS = Path(os.environ.get("CLUSTERLAB_DOCS_RESULTS") or ROOT / results_dir_of(ROOT / "config" / "config.yaml"))
COMMITTED = ROOT / "benchmarks"


def number(value: float) -> str:
    """Three decimals below 10 (scores, rates), one above (FD, seconds); – for a missing value."""
    return "–" if math.isnan(value) else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def text_cell(text) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return re.sub(r"\s+", " ", str(text)).replace("|", "\\|").strip()


def cell(value) -> str:
    """A value as one Markdown table cell: numbers by `number`, text by `text_cell`."""
    return number(value) if isinstance(value, float) else text_cell(value)


def _written(path: Path) -> str:
    return datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()


def _source(path: Path, root: Path) -> str:
    return f"*From `{path.relative_to(root.parent)}`, written {_written(path)}.*"


def _missing(path: Path, root: Path, command: str) -> str:
    return f"*Not run in this checkout yet: `{command}` writes `{path.relative_to(root.parent)}`.*"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]]


def claims_results(results: Path) -> Path:
    """The claims sweep's results folder, beside the demo's (`results_dir` of config/claims.yaml)."""
    return results.parent / results_dir_of(ROOT / "config" / "claims.yaml")


def _demo_table(name: str):
    """A figure from `<results>/tables/<name>.parquet`: `render(frame) -> lines`, or the command that writes it;
    `figure.claims` renders the same from the claims sweep's folder."""
    import pandas as pd

    def decorate(render):
        def from_folder(results: Path, command: str) -> str:
            path = results / "tables" / f"{name}.parquet"
            if not path.exists():
                return _missing(path, results, command)
            return "\n".join([_source(path, results), "", *render(pd.read_parquet(path))])

        def figure(results: Path = RESULTS, committed: Path = COMMITTED) -> str:  # noqa: ARG001 - one signature
            return from_folder(results, "make demo")

        def claims(results: Path = RESULTS, committed: Path = COMMITTED) -> str:  # noqa: ARG001
            return from_folder(claims_results(results), "make claims")
        figure.__doc__ = claims.__doc__ = render.__doc__
        figure.claims = claims
        return figure
    return decorate


def _interval(mean: float, low: float, high: float) -> str:
    return "–" if math.isnan(mean) else f"{number(mean)} [{number(low)}, {number(high)}]"


def demo_headlines(results: Path = RESULTS, committed: Path = COMMITTED) -> str:  # noqa: ARG001
    """The lines `make demo` ends with: per stage, what won."""
    from lightning_modules.analysis.reporting import headline_tables, headlines

    lines = headlines(headline_tables(results))
    if not lines:
        return _missing(results / "tables", results, "make demo")
    return "\n".join([f"*From `{results.name}/tables/`.*", "", *[f"- {line}" for line in lines]])


@_demo_table("clustering")
def demo_clustering(runs) -> list[str]:
    """Mean ACC over seeds per dataset x backbone x method (rows) and K (columns); NMI where ACC is undefined (K
    above the number of classes)."""
    settings = ["dataset", "backbone", "method", "k"]
    acc, nmi = (runs.groupby(settings)[metric].mean().unstack("k") for metric in ("acc", "nmi"))
    seeds = runs.groupby(settings[:3]).seed.nunique()
    header = ["dataset / backbone", "method", *[f"K = {k}" for k in acc.columns], "seeds"]
    rows = [[f"{dataset} / {backbone}", method,
             *[number(a) if not math.isnan(a) else "–" if math.isnan(n) else f"NMI {number(n)}"
               for a, n in zip(acc.loc[key], nmi.loc[key])], int(seeds[key])]
            for key in acc.index for dataset, backbone, method in [key]]
    return ["Mean ACC over seeds (NMI where K exceeds the number of classes; – where the method did not run at that "
            "K):", "", *_table(header, rows)]


@_demo_table("clustering")
def demo_comparisons(runs) -> list[str]:
    """The clustering report's first section: every method against k-means, paired on seeds, Holm over its family."""
    from lightning_modules.clustering.summary import method_comparisons
    from lightning_modules.metrics.stats import describe_comparisons

    comparisons = method_comparisons(runs)
    if comparisons.empty:
        return ["No setting has two methods on common seeds."]
    return [f"Family: {comparisons.family.iloc[0]} ({int(comparisons.p_value.notna().sum())} tests).", "",
            *[f"- {line}" for line in describe_comparisons(comparisons)]]


@_demo_table("selection")
def demo_selection(selection) -> list[str]:
    """The default criterion's label-free pick per dataset x backbone, and its regret against the best in hindsight."""
    picks = selection.groupby(["dataset", "backbone"], sort=False).head(1)  # the default's row comes first
    rows = [[f"{row.dataset} / {row.backbone}", f"`{row.criterion}`", f"{row.method} K = {row.k:g}", row.acc,
             row.best_acc, row.nmi_regret] for row in picks.itertuples()]
    return _table(["dataset / backbone", "criterion", "pick", "ACC of the pick", "best ACC in hindsight",
                   "NMI regret"], rows)


@_demo_table("cluster_bounds")
def demo_bound(bounds) -> list[str]:
    """The upper cluster bound per dataset x backbone."""
    columns = [c for c in ("dataset", "backbone", "k", "bound") if c in bounds]
    return _table(columns, bounds[columns].values.tolist())


@_demo_table("ood")
def demo_ood(ood) -> list[str]:
    """AUROC [95% bootstrap interval] per scorer (rows, best first on the first pair) and OOD pair (columns); attacked
    rows also give the AUROC before the attack; the label-free sensitivity where a scorer has one."""
    pairs = list(dict.fromkeys(ood.ood))
    order = ood[ood.ood == pairs[0]].sort_values("auroc", ascending=False).scorer.tolist()
    order += [s for s in dict.fromkeys(ood.scorer) if s not in order]
    rows = []
    for scorer in order:
        row = [f"`{scorer}`"]
        for pair in pairs:
            match = ood[(ood.scorer == scorer) & (ood.ood == pair)]
            if match.empty:
                row.append("–")
                continue
            entry = match.iloc[0]
            text = _interval(entry.auroc, entry.auroc_low, entry.auroc_high)
            clean = entry.get("auroc_clean")
            row.append(text + (f" ({clean:.3f} before the attack)" if clean is not None and not math.isnan(clean)
                               else ""))
        sensitivity = ood[ood.scorer == scorer].get("sensitivity")
        row.append(sensitivity.iloc[0] if sensitivity is not None else float("nan"))
        rows.append(row)
    return _table(["scorer", *[f"AUROC, {pair}" for pair in pairs], "sensitivity (no labels)"], rows)


@_demo_table("diffusion")
def demo_diffusion(runs) -> list[str]:
    """FD per condition, mean [95% t interval over seeds], beside the real-vs-real floor, and the report's verdict."""
    from lightning_modules.analysis.reporting import diffusion_score
    from lightning_modules.diffusion.summary import summarise, verdict

    score = diffusion_score(runs)
    summary = summarise(runs, score)
    rows = [[f"{row.dataset}", f"{row.cond}", _interval(row.mean, row.low, row.high),
             getattr(row, "floor", float("nan")), getattr(row, "class_consistency", float("nan")), row.seeds]
            for row in summary.itertuples()]
    return [*_table(["dataset", "condition", f"{score} (lower is better)", "real-vs-real floor",
                     "class consistency", "seeds"], rows), "", verdict(runs, score)]


@_demo_table("claims")
def demo_ledger(claims) -> list[str]:
    """The claims ledger: verdict, unit of replication, effect [raw 95%] · deciding interval, Holm's p."""
    rows = []
    for row in claims.itertuples():
        if row.verdict == "not testable":
            rows.append([row.claim, row.verdict, "–", row.reason, "–"])
            continue
        effect = f"{row.metric} {row.effect:.3g}"
        if not math.isnan(row.low):
            effect += (f" [{row.low:.3g}, {row.high:.3g}] · [{row.low_decides:.3g}, {row.high_decides:.3g}]")
        else:
            effect += f" ({row.reason})" if isinstance(row.reason, str) and row.reason else ""
        unit = f"{str(row.unit).split(' (')[0]} ({row.n})"
        rows.append([row.claim, row.verdict, unit, effect, "–" if math.isnan(row.p_holm) else f"{row.p_holm:.2g}"])
    return _table(["finding", "verdict", "unit (n)", "effect [raw 95%] · deciding interval", "Holm p"], rows)


def bench_table(name: str, results: Path = RESULTS) -> str:
    """One `make bench` table, `results/bench/<name>.json`, with when, on how many cores and at what GEMM peak."""
    path = results / "bench" / f"{name}.json"
    if not path.exists():  # a table is named after its module, or module-part (clustering-kmeans, scale-200k)
        return _missing(path, results, f"python -m benchmarks.{name.split('-')[0]}")
    table = json.loads(path.read_text())
    measured = table.get("_measured")
    when = (f"measured {measured['date']} on {measured['cores']} cores, GEMM peak {measured['gemm_gflops']:.0f} "
            f"GFLOP/s" if measured else f"written {_written(path)}, before tables recorded their GEMM peak")
    notes = table.get("_notes", {})
    flat = {f"{group} · {metric}": value for group, values in table.items() if isinstance(values, dict)
            and not group.startswith("_") for metric, value in values.items()}  # a table per setting (tracking_load)
    rows = [[metric, f"{value:.4g}", notes.get(metric, "")] for metric, value in {**table, **flat}.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]
    return "\n".join([f"*From `{path.relative_to(results.parent)}`, {when}.*", "",
                      *_table(["metric", "value", "what"], rows)])


def bench_tables(results: Path = RESULTS, committed: Path = COMMITTED) -> str:  # noqa: ARG001
    """Every `make bench` table."""
    names = sorted(path.stem for path in (results / "bench").glob("*.json") if path.stem != "summary")
    if not names:
        return _missing(results / "bench", results, "make bench")
    return "\n\n".join(f"### `{name}`\n\n{bench_table(name, results)}" for name in names)


def selection_benchmark(results: Path = RESULTS, committed: Path = COMMITTED) -> str:  # noqa: ARG001
    """K without labels: each criterion's regret on the fresh draw of `benchmarks/selection.py`'s data sets, the
    default chosen on the first draw, and the first stage's split."""
    path = committed / "selection.json"
    if not path.exists():
        return _missing(path, committed, "python -m benchmarks.selection")
    record = json.loads(path.read_text())
    development = {row["criterion"]: row["mean_acc_regret"] for row in record["development_table"]}
    rows = [[f"`{row['criterion']}`" + (" (default)" if row["criterion"] == record["default"] else ""),
             development.get(row["criterion"], float("nan")), row["mean_acc_regret"], row["worst_acc_regret"],
             row["mean_nmi_regret"], row["median_abs_log_ratio"], row["share_k_exact"]]
            for row in record["held_out_table"]
            + [row for row in record["held_out_candidates"] if row["criterion"] == record["default"]]]
    held, target, first = record["default_on_held_out"], record["target"], record["first_stage"]
    return "\n".join([
        f"*From `benchmarks/selection.json` (committed), written {_written(path)}: the default `{record['default']}` "
        f"was chosen by {record['chosen_on']} ({len(record['development'])} data sets); the table measures every "
        f"registered criterion and it on the {len(record['held_out'])} data sets of the fresh draw (seed "
        f"{record['fresh_seed']}), on which nothing was chosen.*", "",
        *_table(["criterion", "ACC regret (first draw)", "ACC regret fresh draw: mean", "worst", "NMI regret",
                 "median \\|log K̂/K\\|", "K̂ = K"], rows), "",
        f"Target on data not chosen on: mean ACC regret ≤ {target['mean_acc_regret']:.2f} (the default: "
        f"{held['mean_acc_regret']:.3f}) and median |log K̂/K| ≤ {target['median_abs_log_ratio']:.2f} (the default: "
        f"{held['median_abs_log_ratio']:.2f}): **{'met' if record['target_met'] else 'not met'}**.", "",
        f"The first stage, as declared when it ran: the first draw split in halves by seed {first['split_seed']}, "
        f"`{first['default']}` chosen on {len(first['development'])} of them without the voted picks, mean ACC "
        f"regret {first['default_on_held_out']['mean_acc_regret']:.3f} and median |log K̂/K| "
        f"{first['default_on_held_out']['median_abs_log_ratio']:.2f} on the other {len(first['held_out'])}: "
        f"{'met' if first['target_met'] else 'not met'}.", "",
        *_protocol_spread(record["split_spread"])])


def _protocol_spread(spread: dict) -> list[str]:
    """The selection protocol over random halvings, and the family's best in hindsight (benchmarks.selection)."""
    regret, log_ratio, best = (spread["held_out_mean_acc_regret"], spread["held_out_median_abs_log_ratio"],
                               spread["best_in_hindsight"])
    chosen = ", ".join(f"`{name}` {share:.0%}" for name, share in spread["defaults_chosen"].items())
    return [f"Halving the first draw {spread['repeats']} times at random (the default chosen on one half of it, "
            f"voted picks included, as above on the whole): "
            f"held-out mean ACC regret {regret['0.5']:.3f} (90% of halvings between {regret['0.05']:.3f} and "
            f"{regret['0.95']:.3f}), median |log K̂/K| {log_ratio['0.5']:.2f}; the target met in "
            f"{spread['share_target_met']:.0%} of them. Chosen most often: {chosen}. The best any one candidate does "
            f"on every data set of the first draw, in hindsight: `{best['criterion']}`, mean ACC regret "
            f"{best['mean_acc_regret']:.3f}, median |log K̂/K| {best['median_abs_log_ratio']:.2f} — "
            f"{'within' if best['meets_target'] else 'outside'} the target."]


def ledger_calibration(results: Path = RESULTS, committed: Path = COMMITTED) -> str:  # noqa: ARG001
    """How often the claims ledger errs, from the committed simulation."""
    path = committed / "ledger_calibration.json"
    if not path.exists():
        return _missing(path, committed, "python -m benchmarks.ledger_calibration")
    record = json.loads(path.read_text())
    rows = [[f"{row['claim']} ({row['effect_direction']})", row["false_supported"], row["false_contradicted"],
             row["random_settings_false"], row["power_n5"], row["power_n10"], row["power_n20"], row["n_for_80_power"]]
            for row in record["findings"] if row["testable"]]
    return "\n".join([f"*From `benchmarks/ledger_calibration.json` (committed), written {_written(path)}.*", "",
                      " ".join(record["summary"].split()), "",
                      *_table(["finding (measured direction)", "false supported", "false contradicted",
                               "false, random settings", "power, 5 seeds / sets", "10", "20", "80% power at"], rows)])


FIGURES = {"demo-headlines": demo_headlines, "demo-clustering": demo_clustering, "demo-comparisons": demo_comparisons,
           "demo-selection": demo_selection, "demo-bound": demo_bound, "demo-ood": demo_ood,
           "demo-diffusion": demo_diffusion, "demo-ledger": demo_ledger, "bench": bench_tables,
           "selection-benchmark": selection_benchmark, "ledger-calibration": ledger_calibration,
           "claims-ledger": demo_ledger.claims, "claims-selection": demo_selection.claims}
BENCH_PREFIX = "bench-"  # `bench-<name>`: one make bench table


def render(name: str, results: Path = RESULTS, committed: Path = COMMITTED) -> str:
    if name in FIGURES:
        return FIGURES[name](results, committed)
    if name.startswith(BENCH_PREFIX):
        return bench_table(name.removeprefix(BENCH_PREFIX), results)
    raise KeyError(f"no figure '{name}' (known: {', '.join(FIGURES)}, {BENCH_PREFIX}<make bench table>)")
