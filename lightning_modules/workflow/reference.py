"""The docs' reference pages, generated at build time from the code and the schema, never written by hand:
the configuration (config/schema.yaml with the registries' settings filled in), the plug-in registries, the results
layout and the `make` targets. `mkdocs.yml` names this file as a hook: MkDocs calls `on_files` and the pages
appear under `reference/` in the built site (`make docs`).

    python -m lightning_modules.workflow.reference configuration   # one page on stdout
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERATED = "reference"  # the site folder the pages appear in


def _cell(text) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return re.sub(r"\s+", " ", str(text)).replace("|", "\\|").strip()


def _type(node: dict) -> str:
    kind = node.get("type", "enum" if "enum" in node else "object" if "properties" in node else "")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    if "enum" in node:
        kind += ": " + ", ".join(f"`{value}`" for value in node["enum"])
    if node.get("type") == "array" and isinstance(node.get("items"), dict) and "enum" in node["items"]:
        kind += " of " + ", ".join(f"`{value}`" for value in node["items"]["enum"])
    return kind


def _resolve(node: dict, root: dict) -> dict:
    """`node` with a local `$ref` (#/$defs/...) replaced by what it points to."""
    while "$ref" in node:
        target = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        own = {k: v for k, v in node.items() if k != "$ref"}
        properties = {name: {**target.get("properties", {}).get(name, {}), **value}  # a default over the group's
                      for name, value in own.get("properties", {}).items()}
        node = {**target, **own, "properties": {**target.get("properties", {}), **properties}}
    return node


def _rows(node: dict, path: str, rows: list, root: dict) -> None:
    node = _resolve(node, root)
    for name, child in node.get("properties", {}).items():
        child = _resolve(child, root)
        key = f"{path}.{name}" if path else name
        default = f"`{json.dumps(child['default'])}`" if "default" in child and not isinstance(
            child["default"], dict) else ""
        rows.append((key, _type(child), default, child.get("description", "")))
        _rows(child, key, rows, root)
    extra = node.get("additionalProperties", True)
    if isinstance(extra, dict):
        extra = _resolve(extra, root)
        key = f"{path}.<name>"
        rows.append((key, _type(extra), "", extra.get("description", "")))
        _rows(extra, key, rows, root)
    elif extra is True and node.get("type") == "object" and "properties" in node:
        rows.append((f"{path}.<option>", "any", "", "an option of the plug-in named here, checked by its own code"))


def _table(rows) -> str:
    lines = ["| key | type | default | what it is |", "|---|---|---|---|"]
    lines += [f"| `{_cell(key)}` | {_cell(kind)} | {_cell(default)} | {_cell(text)} |" for key, kind, default, text in rows]
    return "\n".join(lines)


def configuration_page() -> str:
    """Every key of a sweep's config: type, default, description; the methods' settings from their own files."""
    from lightning_modules.workflow.config import assembled_schema

    schema = assembled_schema()
    rows: list = []
    _rows(schema, "", rows, schema)
    parts = ["# Configuration", "", _cell(schema.get("description", "")), "",
             "Generated from `config/schema.yaml` and the plug-ins' `SETTINGS` when the docs are built. A sweep's "
             "config is checked against it before any job runs (`make dry-run` shows the mistakes, one line each). "
             "`<name>` stands for a name of your choosing (a dataset's, a group's).", "", _table(rows), ""]
    return "\n".join(parts)


def _registries() -> dict:
    from lightning_modules.backbones import BACKBONES
    from lightning_modules.clustering import METHODS, SELECTION_CRITERIA
    from lightning_modules.data import DATASETS
    from lightning_modules.diffusion import CONDITIONERS, DENOISERS, FEATURE_NETWORKS
    from lightning_modules.ood import OOD_SCORERS, PROBE_LABELS

    return {registry.kind: registry for registry in (DATASETS, BACKBONES, METHODS, SELECTION_CRITERIA, OOD_SCORERS,
                                                     PROBE_LABELS, CONDITIONERS, DENOISERS, FEATURE_NETWORKS)}


def _first_line(target: str) -> str:
    """The first sentence of a plug-in's docstring, read from its source (no import)."""
    import ast
    import importlib.util

    module_name, _, attribute = target.partition(":")
    spec = importlib.util.find_spec(module_name)
    tree = ast.parse(Path(spec.origin).read_text())
    node = next((n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == attribute), tree)
    text = ast.get_docstring(node) or ast.get_docstring(tree) or ""
    return text.split("\n\n")[0]


def registries_page() -> str:
    """Every plug-in kind and every name registered in it: where it lives, what it declares, its docstring's lead."""
    parts = ["# Registries", "", "Generated from the registries when the docs are built: every name a config may use, "
             "the file it lives in, what its register line declares (`info`), and the first paragraph of its "
             "docstring (which names the paper or official file it follows). Adding one is one file and one register "
             "line (see the architecture page).", ""]
    for kind, registry in _registries().items():
        parts += [f"## {kind[0].upper() + kind[1:]}", "", "| name | where | declares | what it is |", "|---|---|---|---|"]
        for name in registry.names():
            entry = registry.entry(name)
            declared = {**entry.info, **({"settings": sorted(entry.declared["SETTINGS"])}
                                         if "SETTINGS" in entry.declared else {})}
            info = ", ".join(f"{key}: {value}" for key, value in declared.items())
            parts.append(f"| `{name}` | `{entry.target}` | {_cell(info)} | {_cell(_first_line(entry.target))} |")
        parts.append("")
    return "\n".join(parts)


def layout_page() -> str:
    """Every kind of result and its folder under the results directory."""
    from lightning_modules.core import layout

    parts = ["# Results layout", "", _cell(layout.__doc__.split("\n\n")[0]), "",
             "Generated from `lightning_modules/core/layout.py` when the docs are built.", "",
             "| result | folder under `results/` | fields |", "|---|---|---|"]
    for record in sorted(layout.RECORDS, key=lambda r: r.FOLDER):
        fields = ", ".join(f"`{field}`" for field in record.__dataclass_fields__)
        parts.append(f"| `{record.__name__}` | `{record.FOLDER}` | {fields} |")
    parts += ["", "| file | path under `results/` |", "|---|---|"]
    for name in ("TRACKING_EXPERIMENT", "TRACKING_RECONCILED", "TRACKING_SWEEP", "CLAIMS_REGISTRATION",
                 "ARTIFACT_STORE", "TRACKING_DATABASE", "LOGS"):
        parts.append(f"| `{name}` | `{getattr(layout, name)}` |")
    return "\n".join(parts) + "\n"


def make_targets(makefile: Path = REPO / "Makefile") -> list[tuple[str, str]]:
    """(target, the comment above it) for every documented target of the Makefile, in its order."""
    targets, comment = [], []
    for line in makefile.read_text().splitlines():
        if line.startswith("#"):
            comment.append(line.lstrip("# ").rstrip())
            continue
        match = re.match(r"^([a-z][a-z0-9-]*):(?!=)", line)
        if match and comment:
            targets.append((match.group(1), " ".join(comment)))
        if not line.startswith("\t"):
            comment = [] if not line.startswith("#") else comment
    return targets


def commands_page() -> str:
    parts = ["# Command line", "", "Generated from the Makefile's comments when the docs are built. Every target "
             "installs the locked environment first (`.venv`).", "", "| command | what it does |", "|---|---|"]
    parts += [f"| `make {target}` | {_cell(text)} |" for target, text in make_targets()]
    return "\n".join(parts) + "\n"


def _bench_table(name: str, table: dict) -> list[str]:
    measured = table.get("_measured")
    when = (f"measured {measured['date']} on {measured['cores']} cores, GEMM peak {measured['gemm_gflops']:.0f} "
            f"GFLOP/s" if measured else "written before tables recorded their date and GEMM peak")
    flat = {f"{group} · {metric}": value for group, values in table.items() if isinstance(values, dict)
            and group != "_measured" for metric, value in values.items()}  # a table per setting (tracking_load)
    rows = [(metric, value) for metric, value in {**table, **flat}.items() if isinstance(value, (int, float))
            and not isinstance(value, bool)]
    return [f"### `{name}`", "", f"`results/bench/{name}.json`, {when}.", "", "| metric | value |", "|---|---|",
            *[f"| {_cell(metric)} | {value:.4g} |" for metric, value in rows], ""]


def _mtime(path: Path) -> str:
    import datetime

    return datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()


def figures_page(results: Path = REPO / "results", committed: Path = REPO / "benchmarks") -> str:
    """The figures of the last runs in this checkout, read from the files the demo and the benchmarks write (none
    typed): the demo's clustering and ledger tables, every `make bench` table with its date and GEMM peak, and the
    committed selection and ledger-calibration benchmarks."""
    import pandas as pd

    parts = ["# Figures from the last runs", "", "Rendered when the docs are built, from the files the runs wrote in "
             "this checkout, never typed: rebuild the docs after a run to update them. Machines here differ about 3x "
             "in speed from day to day, so a time is shown with the GEMM peak measured beside it.", ""]
    tables = results / "tables"
    parts += ["## The demo (`make demo`)", ""]
    if (tables / "clustering.parquet").exists():
        runs = pd.read_parquet(tables / "clustering.parquet")
        mean = runs.groupby(["dataset", "backbone", "method", "k"])["acc"].agg(["mean", "count"]).reset_index()
        parts += [f"`{tables.relative_to(results.parent)}/clustering.parquet`, written {_mtime(tables / 'clustering.parquet')}: "
                  f"{len(runs)} runs; mean ACC over seeds.", "", "| dataset | backbone | method | K | mean ACC | seeds |",
                  "|---|---|---|---|---|---|"]
        parts += [f"| {r.dataset} | {r.backbone} | {r.method} | {r.k} | {r['mean']:.3f} | {r['count']} |"
                  for _, r in mean.iterrows()]
        parts.append("")
    else:
        parts += ["No demo has run in this checkout: `make demo` writes `results/tables/`.", ""]
    if (tables / "claims.parquet").exists():
        claims = pd.read_parquet(tables / "claims.parquet")
        columns = [c for c in ("claim", "verdict", "statement") if c in claims.columns]
        parts += [f"The claims ledger (`claims.parquet`, written {_mtime(tables / 'claims.parquet')}):", "",
                  "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        parts += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for _, row in claims.iterrows()]
        parts.append("")
    parts += ["## Benchmarks (`make bench`)", ""]
    bench = sorted(path for path in (results / "bench").glob("*.json") if path.stem != "summary")
    if not bench:
        parts += ["No benchmark has run in this checkout: `make bench` writes `results/bench/`.", ""]
    for path in bench:
        table = json.loads(path.read_text())
        if isinstance(table, dict):
            parts += _bench_table(path.stem, table)
    selection = committed / "selection.json"
    if selection.exists():
        record = json.loads(selection.read_text())
        held = record["default_on_held_out"]
        parts += ["## K without labels (`benchmarks/selection.py`, committed)", "",
                  f"The default criterion `{record['default']}` was chosen on the development half of the benchmark's "
                  f"data sets ({_cell(record['chosen_on'])}); on the held-out half:", "",
                  "| measure | held out | target |", "|---|---|---|"]
        for measure, target in record["target"].items():
            parts.append(f"| {measure} | {held[measure]:.3f} | ≤ {target:.3f} |")
        parts += ["", f"Target met: **{'yes' if record['target_met'] else 'no'}**.", ""]
    calibration = committed / "ledger_calibration.json"
    if calibration.exists():
        record = json.loads(calibration.read_text())
        parts += ["## How often the claims ledger errs (`benchmarks/ledger_calibration.py`, committed)", "",
                  " ".join(record["summary"].split()), ""]
    return "\n".join(parts)


PAGES = {"configuration": configuration_page, "registries": registries_page, "layout": layout_page,
         "commands": commands_page, "figures": figures_page}


def on_files(files, config):  # noqa: ARG001 - MkDocs' hook signature
    """MkDocs hook: add the generated pages to the site."""
    from mkdocs.structure.files import File

    for name, page in PAGES.items():
        files.append(File.generated(config, f"{GENERATED}/{name}.md", content=page()))
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PAGES:
        sys.exit(f"usage: python -m lightning_modules.workflow.reference {{{','.join(PAGES)}}}")
    print(PAGES[sys.argv[1]]())
