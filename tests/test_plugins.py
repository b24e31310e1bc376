"""A new method is one file and one register line: a copy of the project gains a toy clustering method with a
setting, a toy OOD scorer and a toy diffusion conditioner, exactly as the tutorial docs/tutorials/add-a-plugin.md
tells a contributor (its blocks are read from the page), and a tiny sweep runs them end to end into the tables,
the MLflow store and the reports."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd

from conftest import REPO, code_blocks, project_copy, run_copy

RECIPE = REPO / "docs" / "tutorials" / "add-a-plugin.md"  # the tutorial's blocks are this test's plug-ins


def plugins() -> dict[str, str]:
    """file -> text of the tutorial's named blocks: a new file, or (an `__init__.py`) the line added at its end."""
    return {title: text for _, title, text in code_blocks(RECIPE) if title}


SWEEP = {
    "sweep": "plugins",
    "datasets": {"digits-04": {"source": "digits", "split": "train", "classes": [0, 1, 2, 3, 4]},
                 "digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "knn": {"k": 10},
    "maps": {"method": None},
    "clustering": {"k": [5], "seeds": [0], "methods": {
        "kmeans": {"n_init": 1, "max_iter": 10, "datasets": ["digits-04"]},
        "stripes": {"offset": 2, "datasets": ["digits-04"]}}},
    "ood": {"pairs": [{"name": "near", "in": "digits-04", "out": {"dataset": "digits", "classes": [5, 6, 7, 8, 9]}}],
            "scorers": ["knn1", "centre-distance"], "bootstrap": {"resamples": 20}},
    "diffusion": {"datasets": ["digits-04"], "conditions": ["none", "parity"], "seeds": [0],
                  "network": {"name": "mlp", "hidden": 8, "blocks": 1}, "edm": {"steps": 2}, "train_steps": 2,
                  "batch_size": 16, "checkpoint_every": 2, "n_samples": 8,
                  "metrics": {"networks": ["backbone"], "kid_subsets": 2}},
}


def test_a_new_method_scorer_and_conditioner_are_one_file_and_one_register_line_each(tmp_path):
    copy = project_copy(tmp_path)
    recipe = plugins()
    assert len(recipe) == 6, sorted(recipe)  # three files, three register lines
    for path, text in recipe.items():
        if path.endswith("__init__.py"):
            (copy / path).write_text((copy / path).read_text() + "\n" + text)
        else:
            (copy / path).write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    done = run_copy(copy, work, SWEEP)
    assert done.returncode == 0, done.stderr[-3000:]
    results = work / "results"

    runs = pd.read_parquet(results / "tables" / "clustering.parquet")
    stripes = runs[runs.method == "stripes"]
    assert len(stripes) == 1 and stripes.k.item() == 5
    assignments = np.load(results / "digits-04/pixels/clusters/stripes/k5/seed0/assignments.npy")
    assert assignments[:3].tolist() == [2, 3, 4]  # its setting reached it (offset 2, not the default 0)
    assert "centre-distance" in set(pd.read_parquet(results / "tables" / "ood.parquet").scorer)
    assert "parity" in set(pd.read_parquet(results / "tables" / "diffusion.parquet").cond)

    with sqlite3.connect(results / "mlflow.db") as store:
        names = {name for (name,) in store.execute("select name from runs where status = 'FINISHED'")}
    assert any(name.startswith("stripes k5") for name in names), names
    assert any(name.startswith("centre-distance") for name in names), names
    assert any(name.startswith("parity") for name in names), names
    reconciled = json.loads((results / "tracking" / "reconciled.json").read_text())
    assert "error" not in reconciled and not reconciled["created"]  # every run logged itself

    for report, name in (("clustering", "stripes"), ("ood", "centre-distance"), ("diffusion", "parity")):
        assert name in (results / "reports" / f"{report}.html").read_text(), f"{name} not in the {report} report"
