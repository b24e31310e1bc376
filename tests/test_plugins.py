"""A new method is one file and one register line: a copy of the project gains a toy clustering method with a
setting, a toy OOD scorer and a toy diffusion conditioner, each as a contributor would add it, and a tiny sweep
runs them end to end into the tables, the MLflow store and the reports."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd

from conftest import project_copy, run_copy

PLUGINS = {  # file -> (its text, the package whose __init__ gets the register line, the register line)
    "lightning_modules/clustering/stripes.py": ('''"""Stripes: row i goes to cluster (i + offset) mod K. A toy method."""

import numpy as np


class Stripes:
    SETTINGS_BASE = "grid"
    SETTINGS = {"offset": {"type": "integer", "minimum": 0, "default": 0, "description": "the first row's cluster"}}

    def __init__(self, n_clusters, seed=0, offset=0):
        self.n_clusters, self.offset = n_clusters, offset

    def fit_predict(self, embeddings, **inputs):
        return (np.arange(len(embeddings)) + self.offset) % self.n_clusters
''', "lightning_modules/clustering/__init__.py",
        'METHODS.register("stripes", "lightning_modules.clustering.stripes:Stripes", small=True)'),
    "lightning_modules/ood/centre_distance.py": ('''"""Closeness to the ID training mean. A toy scorer."""

import numpy as np

from lightning_modules.ood.base import OODScorer


class CentreDistance(OODScorer):
    def fit(self, embeddings, labels=None, **context):
        self.centre_ = np.asarray(embeddings, dtype=np.float64).mean(axis=0)
        return self

    def score(self, x):
        return -np.linalg.norm(np.asarray(x, dtype=np.float64) - self.centre_, axis=1)
''', "lightning_modules/ood/__init__.py",
        'OOD_SCORERS.register("centre-distance", "lightning_modules.ood.centre_distance:CentreDistance")'),
    "lightning_modules/diffusion/parity.py": ('''"""Conditioning on the class label's parity. A toy conditioner."""


def parity_conditioning(data, assignments=None, k=None):
    return data.labels % 2, 2
''', "lightning_modules/diffusion/__init__.py",
        'CONDITIONERS.register("parity", "lightning_modules.diffusion.parity:parity_conditioning", fit_labels="classes")'),
}

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
    for path, (text, package, register) in PLUGINS.items():
        (copy / path).write_text(text)
        init = copy / package
        init.write_text(init.read_text() + "\n" + register + "\n")
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
