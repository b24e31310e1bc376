"""The docs site builds without a warning, and its generated reference pages cover what they claim to: every key a
real config uses, every registered name, every kind of result, every `make` target."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

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
                  "acc": [0.5, 0.7]}).to_parquet(results / "tables" / "clustering.parquet")
    (results / "bench" / "heads.json").write_text(json.dumps(
        {"step_ms": 12.5, "_measured": {"date": "2026-12-06", "gemm_gflops": 190.0, "cores": 2}}))
    (results / "bench" / "load.json").write_text(json.dumps({"sqlite": {"p95_ms": 6000.0}}))
    page = reference.figures_page(results, REPO / "benchmarks")
    assert "| d | b | kmeans | 3 | 0.600 | 2 |" in page  # the mean over the two seeds, computed from the file
    assert "| step_ms | 12.5 |" in page and "measured 2026-12-06 on 2 cores, GEMM peak 190 GFLOP/s" in page
    assert "| sqlite · p95_ms | 6000 |" in page
    assert "Target met: **" in page  # the committed selection benchmark
    empty = reference.figures_page(tmp_path / "nothing", tmp_path / "nothing")
    assert "`make demo` writes" in empty and "`make bench` writes" in empty
