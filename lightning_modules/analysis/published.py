"""Published numbers beside measured ones: `config/published.yaml` holds every headline of the seed papers that
the platform can produce, each with the setting that produced it. Tables gain `published_<metric>` and
`delta_<metric>` where a row's setting matches; `reproduction` lists every published number as reproduced (|Δ|
within the source's tolerance), not reproduced, or not run in this sweep.

    python -m lightning_modules.analysis.published [results]      (make reproduce)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lightning_modules.core.layout import Table
from lightning_modules.core.naming import SPACE_SEPARATOR, space_slug

from lightning_modules.core.project import ROOT

PUBLISHED_FILE = ROOT / "config" / "published.yaml"
STAGES = ("clustering", "ood", "diffusion")
UNITS = {"percent": 100.0, "raw": 1.0}  # published number = table value x this
LOWER_IS_BETTER = ("fd_", "kid_", "fpr95")
STATUSES = ("reproduced", "not reproduced", "not run in this sweep")


@dataclass(frozen=True)
class Published:
    id: str
    paper: str
    source: str
    stage: str
    setting: dict
    values: dict
    unit: str
    tolerance: float
    tolerance_source: str
    best_over: str | None = None
    note: str = ""
    second_source_of: str | None = None  # another source for the setting of this earlier entry (both are reported)
    table_setting: dict = field(default_factory=dict)  # the setting with backbone specs as the tables' slugs


def _backbone_name(spec: str) -> str:
    """A spec (or `a+b` space) as the tables name it."""
    return space_slug([{"spec": part} for part in spec.split(SPACE_SEPARATOR)])


def _table_setting(setting: dict) -> dict:
    out = dict(setting)
    if "backbone" in out:
        value = out["backbone"]
        out["backbone"] = [_backbone_name(v) for v in value] if isinstance(value, list) else _backbone_name(value)
    return out


def load_published(path=PUBLISHED_FILE) -> list[Published]:
    """The entries of a published-numbers file, checked: a mistake is one line naming the entry."""
    import yaml

    document = yaml.safe_load(Path(path).read_text()) or {}
    defaults = document.get("defaults") or {}
    entries, seen = [], set()
    for index, raw in enumerate(document.get("entries") or []):
        where = f"{path}: entries[{index}] ({raw.get('id', '?')})"
        missing = [key for key in ("id", "paper", "source", "stage", "setting", "values", "unit") if key not in raw]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if raw["stage"] not in STAGES or raw["unit"] not in UNITS:
            raise ValueError(f"{where}: stage must be one of {', '.join(STAGES)} and unit one of {', '.join(UNITS)}")
        if raw["id"] in seen:
            raise ValueError(f"{where}: the id '{raw['id']}' is used twice")
        seen.add(raw["id"])
        first = next((e for e in entries if e.id == raw.get("second_source_of")), None)
        if "second_source_of" in raw and (first is None or (first.stage, first.setting) != (raw["stage"], raw["setting"])):
            raise ValueError(f"{where}: second_source_of must name an earlier entry of the same stage and setting")
        tolerance = raw.get("tolerance", (defaults.get("tolerance") or {}).get(raw["unit"]))
        entries.append(Published(
            id=raw["id"], paper=raw["paper"], source=raw["source"], stage=raw["stage"], setting=raw["setting"],
            values={metric: float(value) for metric, value in raw["values"].items()}, unit=raw["unit"],
            tolerance=float(tolerance),
            tolerance_source=raw.get("tolerance_source", defaults.get("tolerance_source", "")),
            best_over=raw.get("best_over"), note=raw.get("note", ""), second_source_of=raw.get("second_source_of"),
            table_setting=_table_setting(raw["setting"])))
    return entries


def matching_rows(frame: pd.DataFrame, entry: Published) -> pd.DataFrame:
    """The table rows of the entry's setting (a list value: any of them); none when a column is missing."""
    mask = pd.Series(True, index=frame.index)
    for column, wanted in entry.table_setting.items():
        if column not in frame:
            return frame.iloc[0:0]
        values = frame[column]
        mask &= values.isin(wanted) if isinstance(wanted, list) else values == wanted
    return frame[mask]


def lower_is_better(metric: str) -> bool:
    return metric.startswith(LOWER_IS_BETTER)


def measured(frame: pd.DataFrame, entry: Published, metric: str) -> dict:
    """The sweep's number for one published value, in the published unit: the mean over the setting's runs
    (seeds), or with `best_over` the best of those means over that column. `runs`: how many runs it rests on."""
    rows = matching_rows(frame, entry)
    if metric not in rows or rows[metric].notna().sum() == 0:
        return {"measured": np.nan, "runs": 0, "chosen": None}
    rows = rows[rows[metric].notna()]
    chosen = None
    if entry.best_over:
        means = rows.groupby(entry.best_over)[metric].mean()
        chosen = means.idxmin() if lower_is_better(metric) else means.idxmax()
        rows = rows[rows[entry.best_over] == chosen]
    value = float(rows[metric].mean()) * UNITS[entry.unit]
    return {"measured": value, "runs": int(len(rows)), "chosen": None if chosen is None else str(chosen)}


def reproduction(tables: dict[str, pd.DataFrame], entries: list[Published] | None = None) -> pd.DataFrame:
    """One row per published number: its setting, the published and measured values, Δ = measured − published,
    the tolerance and a status (reproduced / not reproduced / not run in this sweep)."""
    entries = load_published() if entries is None else entries
    rows = []
    for entry in entries:
        frame = tables.get(entry.stage)
        for metric, published in entry.values.items():
            result = measured(frame, entry, metric) if frame is not None else {"measured": np.nan, "runs": 0,
                                                                               "chosen": None}
            delta = result["measured"] - published
            status = (STATUSES[2] if not result["runs"] else
                      STATUSES[0] if abs(delta) <= entry.tolerance else STATUSES[1])
            rows.append({"id": entry.id, "paper": entry.paper, "stage": entry.stage,
                         "setting": ", ".join(f"{key}={value}" for key, value in entry.setting.items()),
                         "metric": metric, "published": published, "measured": result["measured"], "delta": delta,
                         "tolerance": entry.tolerance, "status": status, "runs": result["runs"],
                         "best": f"{entry.best_over}={result['chosen']}" if result["chosen"] is not None else "",
                         "source": entry.source, "note": entry.note})
    return pd.DataFrame(rows, columns=["id", "paper", "stage", "setting", "metric", "published", "measured", "delta",
                                       "tolerance", "status", "runs", "best", "source", "note"])


def annotate(frame: pd.DataFrame, stage: str, entries: list[Published] | None = None) -> pd.DataFrame:
    """`published_<metric>` and `delta_<metric>` (the row's value in the published unit minus the published one)
    for every metric with a published number of this stage; NaN on rows of no published setting. A setting with a
    second source shows its first (`reproduction` reports both)."""
    entries = [e for e in (load_published() if entries is None else entries)
               if e.stage == stage and e.second_source_of is None]
    frame = frame.copy()
    for metric in dict.fromkeys(metric for entry in entries for metric in entry.values):
        frame[f"published_{metric}"] = np.nan
        frame[f"delta_{metric}"] = np.nan
    for entry in entries:
        index = matching_rows(frame, entry).index
        for metric, published in entry.values.items():
            frame.loc[index, f"published_{metric}"] = published
            if metric in frame:
                frame.loc[index, f"delta_{metric}"] = frame.loc[index, metric] * UNITS[entry.unit] - published
    return frame


def read_tables(results_dir) -> dict[str, pd.DataFrame]:
    """The stage tables a results folder has (`tables/<stage>.parquet`)."""
    tables = {}
    for stage in STAGES:
        path = Path(results_dir) / Table().file(f"{stage}.parquet")
        if path.exists():
            tables[stage] = pd.read_parquet(path)
    return tables


def summary_line(report: pd.DataFrame) -> str:
    counts = report["status"].value_counts()
    line = ", ".join(f"{int(counts.get(status, 0))} {status}" for status in STATUSES)
    if not counts.get(STATUSES[0], 0) and not counts.get(STATUSES[1], 0):
        line += ": no published setting was run in this sweep (a demo-scale sweep cannot reproduce a paper)"
    return f"{len(report)} published numbers: {line}"


def format_report(report: pd.DataFrame) -> str:
    """Markdown: one line per published number."""
    def number(value):
        return "–" if not np.isfinite(value) else f"{value:.2f}"

    lines = ["| paper | setting | metric | published | measured | Δ | ± | status |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report.itertuples():
        setting = row.setting + (f" (best: {row.best})" if row.best else "")
        lines.append(f"| {row.paper} | {setting} | {row.metric} | {number(row.published)} | {number(row.measured)} | "
                     f"{number(row.delta)} | {row.tolerance:g} | {row.status} |")
    return "\n".join(lines)


def report_section(table: pd.DataFrame, stage: str, entries: list[Published] | None = None) -> str:
    """Markdown for a stage report: its published numbers against this sweep's table, with their status."""
    entries = [e for e in (load_published() if entries is None else entries) if e.stage == stage]
    report = reproduction({stage: table}, entries)
    return f"{summary_line(report)}\n\n{format_report(report)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Every published number: reproduced, not reproduced or not run "
                                                 "in the sweep of a results folder.")
    parser.add_argument("results", nargs="?", default="results")
    parser.add_argument("--published", default=str(PUBLISHED_FILE))
    args = parser.parse_args(argv)
    try:
        report = reproduction(read_tables(args.results), load_published(args.published))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_report(report))
    print()
    print(summary_line(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
