"""The docs site builds without a warning, and its generated reference pages cover what they claim to: every key a
real config uses, every registered name, every kind of result, every `make` target; result figures are rendered
from the runs' files, never typed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import forks
from conftest import REPO
from lightning_modules.workflow import reference


def test_the_site_builds_strictly_with_its_generated_pages(tmp_path):
    done = subprocess.run([str(Path(sys.executable).with_name("mkdocs")), "build", "--strict", "--quiet",
                           "--site-dir", str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    for page in reference.PAGES:
        assert (tmp_path / "site" / "reference" / page / "index.html").exists(), page


def config_keys(node, documented: set, path=""):
    """The dotted keys of a config file, written as the reference writes them: a name of the user's choosing is
    `<name>`, an option a plug-in checks itself is `<option>`."""
    if isinstance(node, dict):
        for name, value in node.items():
            key = f"{path}.{name}" if path else name
            if key not in documented:
                key = next((f"{path}.{stand_in}" for stand_in in ("<name>", "<option>")
                            if f"{path}.{stand_in}" in documented), key)
            yield key
            if not key.endswith("<option>"):
                yield from config_keys(value, documented, key)


def test_every_key_of_the_shipped_configs_is_in_the_configuration_reference():
    page = reference.configuration_page()
    documented = set(re.findall(r"^\| `([^`]+)` \|", page, flags=re.MULTILINE))
    for config in sorted((REPO / "config").glob("*.yaml")):
        text = yaml.safe_load(config.read_text())
        if not isinstance(text, dict) or "sweep" not in text:
            continue  # the schema, the published headlines
        missing = sorted(set(config_keys(text, documented)) - documented)
        assert not missing, f"{config.name}: {missing[:10]}"


def test_every_registered_name_is_in_the_registries_reference():
    page = reference.registries_page()
    for kind, registry in reference._registries().items():
        section = page.split(f"## {kind[0].upper() + kind[1:]}\n", 1)[1].split("\n## ", 1)[0]
        for name in registry.names():
            assert f"| `{name}` |" in section, (kind, name)


def test_every_kind_of_result_is_in_the_layout_reference():
    from lightning_modules.core.layout import RECORDS

    page = reference.layout_page()
    assert all(f"| `{record.FOLDER}` |" in page for record in RECORDS)


def test_every_make_target_is_documented_in_the_command_line_reference():
    phony = re.search(r"^\.PHONY: (.+)$", (REPO / "Makefile").read_text(), flags=re.MULTILINE).group(1).split()
    documented = dict(reference.make_targets())
    assert set(phony) <= set(documented), sorted(set(phony) - set(documented))
    assert all(documented[target] for target in phony)


def test_the_figures_page_renders_what_the_files_hold(tmp_path):
    import json

    import pandas as pd

    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    (results / "bench").mkdir()
    pd.DataFrame({"dataset": ["d", "d"], "backbone": ["b", "b"], "method": ["kmeans", "kmeans"], "k": [3, 3],
                  "seed": [0, 1], "acc": [0.5, 0.7], "nmi": [0.4, 0.6]}).to_parquet(
        results / "tables" / "clustering.parquet")
    (results / "bench" / "heads.json").write_text(json.dumps(
        {"step_ms": 12.5, "_measured": {"date": "2026-12-06", "gemm_gflops": 190.0, "cores": 2}}))
    (results / "bench" / "load.json").write_text(json.dumps({"sqlite": {"p95_ms": 6000.0}}))
    page = reference.figures_page(results, REPO / "benchmarks")
    assert "| d / b | kmeans | 0.600 | 2 |" in page  # the mean over the two seeds, computed from the file
    assert "| step_ms | 12.5 |" in page and "measured 2026-12-06 on 2 cores, GEMM peak 190 GFLOP/s" in page
    assert "| sqlite · p95_ms | 6000 |" in page
    assert "Target on data not chosen on" in page  # the committed selection benchmark
    empty = reference.figures_page(tmp_path / "nothing", tmp_path / "nothing")
    assert "`make demo` writes" in empty and "`make bench` writes" in empty


def test_result_figures_are_rendered_from_files_not_typed(tmp_path):
    """No page types a result: no table cell that is a bare measured number and no confidence interval in the text
    (code excluded: settings are typed there); figures come from `<!-- figure: NAME -->` markers, and every marker
    names a figure that renders (here from empty folders: then it names the command that writes its file)."""
    from lightning_modules.workflow.doc_figures import render

    typed = []
    for page in sorted((REPO / "docs").rglob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for number, line in enumerate(text.splitlines(), start=1):
            prose = re.sub(r"`[^`]*`", "", line)
            cells = [cell.strip() for cell in prose.strip("|").split("|")] if line.startswith("|") else []
            if any(re.fullmatch(r"[−-]?\d[\d,]*\.\d+( ?[a-zA-Z%×]+)?( \[.*\])?", cell) for cell in cells) or \
                    re.search(r"\[\s*[−+-]?\d*\.\d+\s*,\s*[−+-]?\d*\.\d+\s*\]", prose):
                typed.append(f"{page.relative_to(REPO)}:{number}: {line.strip()[:100]}")
        for name in reference.FIGURE_MARKER.findall(page.read_text()):
            assert "writes" in render(name, tmp_path / "results", tmp_path / "committed"), name
    assert not typed, "typed result figures (use a <!-- figure: ... --> marker):\n" + "\n".join(typed)


def test_each_figure_renders_what_its_file_holds(tmp_path):
    import json

    import pandas as pd

    from lightning_modules.workflow.doc_figures import render

    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    runs = pd.DataFrame({"dataset": "d", "backbone": "b", "method": ["kmeans"] * 3 + ["temi"] * 3, "k": 3,
                         "seed": [0, 1, 2] * 2, "acc": [0.5, 0.6, 0.7, 0.6, 0.8, 0.7], "nmi": 0.5})
    runs.to_parquet(tables / "clustering.parquet")
    clustering = render("demo-clustering", tmp_path / "results")
    assert "| d / b | temi | 0.700 | 3 |" in clustering and "written" in clustering  # the mean over the seeds
    assert "temi +0.100 [" in render("demo-comparisons", tmp_path / "results")  # paired on the seeds
    bench = tmp_path / "results" / "bench"
    bench.mkdir()
    (bench / "heads.json").write_text(json.dumps({"step_ms": 12.5, "_notes": {"step_ms": "one step"},
                                                  "_measured": {"date": "2026-12-06", "gemm_gflops": 190.0,
                                                                "cores": 2}}))
    table = render("bench-heads", tmp_path / "results")
    assert "| step_ms | 12.5 | one step |" in table and "measured 2026-12-06 on 2 cores, GEMM peak 190" in table
    assert "`python -m benchmarks.scale` writes" in render("bench-scale-200k", tmp_path / "results")
    with pytest.raises(KeyError, match="no figure 'demo-nothing'"):
        render("demo-nothing")


def test_every_rule_is_in_the_stages_reference_with_what_it_runs():
    done = forks.run(forks.SNAKEMAKE, ["--list-rules"], cwd=REPO)
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split()
    page = reference.stages_page()
    documented = {rule["name"] for rules in reference.workflow_rules().values() for rule in rules}
    assert documented == set(listed) - {"all"}  # `all` computes nothing: it asks for every result
    for rules in reference.workflow_rules().values():
        for rule in rules:
            assert f"### `{rule['name']}`" in page and f"`workflow/scripts/{rule['script'].name}`" in page
    assert "TEMI-official-BMVC2023" in page  # a method's official code, from its docstring


def test_the_readmes_k_without_labels_table_is_the_committed_benchmarks():
    """README's table of the label-free criteria on the selection benchmark's fresh draw holds the numbers of
    benchmarks/selection.json, rounded as printed: it cannot go stale."""
    import json

    record = json.loads((REPO / "benchmarks" / "selection.json").read_text())
    rows = {row["criterion"]: row for row in record["held_out_table"] + record["held_out_candidates"]}
    readme = (REPO / "README.md").read_text()
    found = re.findall(r"^\| `(\w+)`[^|]*\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+)% \|$", readme, flags=re.MULTILINE)
    assert {name for name, *_ in found} == {record["default"], "agreement_generalisation"}
    assert f"`{record['default']}` (the default)" in readme
    for name, mean, worst, log_ratio, exact in found:
        row = rows[name]
        expected = (f"{row['mean_acc_regret']:.3f}", f"{row['worst_acc_regret']:.3f}",
                    f"{row['median_abs_log_ratio']:.2f}", f"{row['share_k_exact'] * 100:.0f}")
        assert (mean, worst, log_ratio, exact) == expected, name
    assert f"{len(record['held_out'])} fresh data sets" in readme
