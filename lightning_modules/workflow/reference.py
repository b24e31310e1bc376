"""The docs' reference pages, generated at build time from the code and the schema, never written by hand:
the configuration (config/schema.yaml with the registries' settings filled in), the plug-in registries, the results
layout, the `make` targets and the figures of the last runs. `mkdocs.yml` names this file as a hook: MkDocs calls
`on_files` and the pages appear under `reference/` in the built site (`make docs`); `on_page_markdown` puts each
page's result figures in (`doc_figures`).

    python -m lightning_modules.workflow.reference configuration   # one page on stdout
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from lightning_modules.workflow.doc_figures import text_cell

REPO = Path(__file__).resolve().parents[2]
GENERATED = "reference"  # the site folder the pages appear in


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
    lines += [f"| `{text_cell(key)}` | {text_cell(kind)} | {text_cell(default)} | {text_cell(text)} |"
              for key, kind, default, text in rows]
    return "\n".join(lines)


def configuration_page() -> str:
    """Every key of a sweep's config: type, default, description; the methods' settings from their own files."""
    from lightning_modules.workflow.config import assembled_schema

    schema = assembled_schema()
    rows: list = []
    _rows(schema, "", rows, schema)
    parts = ["# Configuration", "", text_cell(schema.get("description", "")), "",
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
    trained = [statement.value.value for statement in getattr(node, "body", []) if isinstance(statement, ast.Assign)
               and any(getattr(name, "id", None) == "module_path" for name in statement.targets)
               and isinstance(statement.value, ast.Constant)]
    if not ast.get_docstring(node) and trained:  # a head's estimator: its LightningModule's module says what it is
        return _first_line(trained[0].partition(":")[0] + ":")
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
            parts.append(f"| `{name}` | `{entry.target}` | {text_cell(info)} | "
                         f"{text_cell(_first_line(entry.target))} |")
        parts.append("")
    return "\n".join(parts)


# which plug-in kinds each stage's rules choose from (the registries page lists every entry's settings)
STAGE_REGISTRIES = {"embed": ("dataset source", "backbone"), "cluster": ("clustering method", "selection criterion"),
                    "ood": ("OOD scorer", "probe label source"),
                    "diffusion": ("diffusion conditioning", "diffusion network", "feature network")}
PLUMBING = ("lightning_modules.services.job_server", "lightning_modules.core.jobs",
            "lightning_modules.services.tracking")


def workflow_rules(rules_dir: Path = REPO / "workflow" / "rules") -> dict[str, list[dict]]:
    """Per rule file (a stage): each rule's name, leading comment and script, read from the Snakemake source."""
    stages = {}
    for path in sorted(rules_dir.glob("*.smk")):
        rules = []
        for block in re.split(r"^(?=(?:rule|checkpoint) \w+:)", path.read_text(), flags=re.MULTILINE)[1:]:
            name = re.match(r"(?:rule|checkpoint) (\w+):", block).group(1)
            lead = []
            for line in block.splitlines()[1:]:  # the comment lines right under the rule's name
                if not line.startswith("    #"):
                    break
                lead.append(line.strip()[1:].strip())
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            rules.append({"name": name, "comment": " ".join(lead),
                          "script": (path.parent / script.group(1)).resolve() if script else None})
        if rules:
            stages[path.stem] = rules
    return stages


def _calls(script: Path) -> list[str]:
    """`module:function` targets a job script imports from the platform, the plumbing every job shares left out."""
    targets = []
    for module, names in re.findall(r"^from (lightning_modules[\w.]*) import ([\w, ]+)$", script.read_text(), re.M):
        if module not in PLUMBING:
            targets += [f"{module}:{name.strip()}" for name in names.split(",")]
    return targets


def stages_page() -> str:
    """A section per stage (rule file): what each rule computes, the function it runs with that function's and its
    module's docstring leads (which name the official code followed), and the plug-ins the stage chooses from."""
    registries = _registries()
    parts = ["# Stages", "", "Generated from `workflow/rules/*.smk` and the code each rule's script runs, when the docs "
             "are built: per stage, what each rule computes and the function it calls, with that function's and its "
             "module's own description (where a method follows an official implementation, its docstring names the "
             "file), and the plug-ins the stage chooses from ([every entry's settings](registries.md)). The order is "
             "alphabetical; the DAG runs embed → knn → cluster → ood / diffusion → report → claims, with tracking "
             "around them.", ""]
    for stage, rules in workflow_rules().items():
        parts += [f"## {stage}", "", f"`workflow/rules/{stage}.smk`", ""]
        for rule in rules:
            parts += [f"### `{rule['name']}`", ""]
            if rule["comment"]:
                parts += [rule["comment"], ""]
            if rule["script"] is None:
                continue
            parts += [f"Runs `workflow/scripts/{rule['script'].name}`."]
            for target in _calls(rule["script"]):
                module = target.partition(":")[0]
                function_lead, module_lead = _first_line(target), _first_line(f"{module}:")
                parts += ["", f"- `{target}`: {' '.join(function_lead.split())}"]
                if module_lead and module_lead != function_lead:
                    parts += [f"  (`{module}`: {' '.join(module_lead.split())})"]
            parts.append("")
        for kind in STAGE_REGISTRIES.get(stage, ()):
            registry = registries[kind]
            parts += [f"**{kind[0].upper() + kind[1:]}** plug-ins this stage chooses from:", ""]
            parts += [f"- `{name}`: {' '.join(_first_line(registry.entry(name).target).split())}"
                      for name in registry.names()]
            parts.append("")
    return "\n".join(parts)


def layout_page() -> str:
    """Every kind of result and its folder under the results directory."""
    from lightning_modules.core import layout

    parts = ["# Results layout", "", text_cell(layout.__doc__.split("\n\n")[0]), "",
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
    parts += [f"| `make {target}` | {text_cell(text)} |" for target, text in make_targets()]
    return "\n".join(parts) + "\n"


def figures_page(results: Path | None = None, committed: Path | None = None) -> str:
    """Every result figure, rendered from the files the demo and the benchmarks wrote (`doc_figures`)."""
    from lightning_modules.workflow.doc_figures import COMMITTED, RESULTS, render

    results, committed = results or RESULTS, committed or COMMITTED
    sections = [("The demo's headlines (`make demo`)", "demo-headlines"), ("Mean ACC", "demo-clustering"),
                ("Who beats k-means", "demo-comparisons"), ("The label-free pick", "demo-selection"),
                ("The upper cluster bound", "demo-bound"), ("OOD detection", "demo-ood"),
                ("Cluster-conditioned diffusion", "demo-diffusion"), ("The claims ledger", "demo-ledger"),
                ("Benchmarks (`make bench`)", "bench"),
                ("K without labels (`benchmarks/selection.py`, committed)", "selection-benchmark"),
                ("How often the claims ledger errs (`benchmarks/ledger_calibration.py`, committed)",
                 "ledger-calibration")]
    parts = ["# Figures from the last runs", "", "Rendered when the docs are built, from the files the runs wrote in "
             "this checkout, never typed: rebuild the docs after a run to update them. Machines here differ about 3x "
             "in speed from day to day, so a time is shown with the GEMM peak measured beside it. The other pages "
             "show the same figures where they explain them.", ""]
    for title, name in sections:
        parts += [f"## {title}", "", render(name, results, committed), ""]
    return "\n".join(parts)


PAGES = {"configuration": configuration_page, "registries": registries_page, "stages": stages_page,
         "layout": layout_page, "commands": commands_page, "figures": figures_page}


FIGURE_MARKER = re.compile(r"^<!-- figure: ([a-z0-9_-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 - MkDocs' hook signature
    """MkDocs hook: each `<!-- figure: NAME -->` line becomes that figure, rendered from its file now."""
    from lightning_modules.workflow.doc_figures import render

    return FIGURE_MARKER.sub(lambda match: render(match.group(1)), markdown)


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
