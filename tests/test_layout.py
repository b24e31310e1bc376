"""The results layout: one module owns every results path. Records go to their folder and back, the Snakefile's
wildcards are the records' fields, and a folder pattern changed in lightning_modules/core/layout.py alone is what the
whole workflow follows."""

import dataclasses

import pandas as pd
import pytest
import yaml

from conftest import REPO, project_copy, run_copy
from lightning_modules.core import layout
from lightning_modules.diffusion import RUN_SETTINGS

RECORDS = [
    layout.Embeddings("digits", "timm-vit_small_patch16_224.dino"),
    layout.KnnGraph("digits", "pixels"),
    layout.ClusteringRun("digits", "pixels", "temi", 10, 0),
    layout.ClusteringRun("digits", "pixels+random-256", "turtle", 10, 2),
    layout.ClusterBound("digits-04", "pixels"),
    layout.Selection("digits", "pixels"),
    layout.OodProbe("digits-04", "pixels", "clusters"),
    layout.OodAttack("digits-04", "pixels", "near", "patchy"),
    layout.OodRun("digits-04", "pixels", "near", "knn1-adv-patchy"),
    layout.OodRun("digits-04", "pixels", "near", "selfdistill-rotations"),
    layout.DiffusionClassifier("digits"),
    layout.DiffusionRun("digits", "clusters-kmeans-k5", 2),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda record: record.folder)
def test_a_record_is_its_folder_and_back(record):
    assert layout.parse(record.folder) == record
    assert layout.parse(f"/abs/results/{record.file('metrics.json')}") == record  # a file in it, below any root
    assert type(record).pattern().format(**dataclasses.asdict(record)) == record.folder


def test_names_paths_cannot_be_confused():
    # a probe's folder also fits an OOD run's pattern (pair `probes`, scorer `clusters`): it is the probe's
    assert type(layout.parse("d/b/ood/probes/clusters")) is layout.OodProbe
    assert layout.parse("digits/pixels/clusters/bound.json") == layout.ClusterBound("digits", "pixels")
    assert layout.parse("digits/diffusion/classifier/model.pt") == layout.DiffusionClassifier("digits")
    assert layout.parse("x/y/z") is None and layout.parse("digits/pixels/clusters/kmeans/kten/seed0") is None


def test_every_record_field_is_a_constrained_wildcard():
    constraints = layout.wildcard_constraints()
    assert {"dataset", "backbone", "method", "k", "seed", "ood", "scorer", "source", "style", "cond"} == set(constraints)
    assert constraints["k"] == r"\d+"


def test_the_fields_that_name_plugins_are_narrowed_to_their_registries():
    import re

    from lightning_modules.diffusion import CONDITIONERS
    from lightning_modules.ood import PROBE_LABELS
    from lightning_modules.workflow.files import wildcard_constraints

    constraints = {name: re.compile(f"(?:{pattern})$") for name, pattern in wildcard_constraints().items()}
    assert all(constraints["cond"].match(name) for name in ("none", "class", "clusters-temi-k20"))
    assert not any(constraints["cond"].match(name) for name in ("clusters", "clusters-temi", "nothing"))
    assert {name for name in PROBE_LABELS.names() if constraints["source"].match(name)} == set(PROBE_LABELS.names())
    assert not constraints["source"].match("probes") and "none" in CONDITIONERS.names()


def test_the_diffusion_runs_settings_and_grid_cover_the_schema():
    """Each diffusion setting is either a run's setting (its params) or its grid (wildcards and inputs): a new
    schema key must be put in one of them."""
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    grid = {"datasets", "backbone", "conditions", "clusters", "seeds", "seeds_in_one_job"}
    assert set(RUN_SETTINGS) | grid == set(schema["properties"]["diffusion"]["properties"])
    assert not set(RUN_SETTINGS) & grid


MOVED = {  # the clustering runs' folder, changed in layout.py only
    "old": 'FOLDER = "{dataset}/{backbone}/clusters/{method}/k{k}/seed{seed}"',
    "new": 'FOLDER = "{dataset}/{backbone}/partitions/{method}-k{k}-s{seed}"',
}
SMALL = {
    "sweep": "moved",
    "job_server": False,  # every job a plain process, as on a cluster (the other workflow tests fork them)
    "datasets": {"digits-04": {"source": "digits", "split": "train", "classes": [0, 1, 2, 3, 4]},
                 "digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "knn": {"k": 10},
    "clustering": {"k": [5], "seeds": [0], "methods": {"kmeans": {"n_init": 1, "max_iter": 10, "datasets": ["digits-04"]}}},
    "ood": {"pairs": [{"name": "near", "in": "digits-04", "out": {"dataset": "digits", "classes": [5, 6, 7, 8, 9]}}],
            "scorers": ["knn1", "cluster-mahalanobis"], "clusters": {"method": "kmeans", "k": 5, "seed": 0},
            "bootstrap": {"resamples": 20}},
    "diffusion": {"datasets": ["digits-04"], "conditions": [], "clusters": {"methods": ["kmeans"], "k": [5]},
                  "seeds": [0], "network": {"name": "mlp", "hidden": 8, "blocks": 1}, "edm": {"steps": 2},
                  "train_steps": 2, "batch_size": 16, "checkpoint_every": 2, "n_samples": 8,
                  "metrics": {"networks": ["backbone"], "kid_subsets": 2}},
}


def test_a_folder_pattern_changed_in_the_layout_module_moves_every_stage_with_it(tmp_path):
    """A copy of the project with the clustering runs' folder changed in layout.py: the workflow writes them
    there, the OOD scorer and the diffusion run that read a clustering find it, and the tables and the
    tracking store name the runs from the new folders. Its jobs run as plain processes (`job_server: false`),
    the path cluster jobs take."""
    copy = project_copy(tmp_path)
    module = copy / "lightning_modules" / "core" / "layout.py"
    source = module.read_text()
    assert MOVED["old"] in source
    module.write_text(source.replace(MOVED["old"], MOVED["new"]))
    work = tmp_path / "work"
    work.mkdir()
    done = run_copy(copy, work, SMALL)
    assert done.returncode == 0, done.stderr[-3000:]
    results = work / "results"
    run = results / "digits-04" / "pixels" / "partitions" / "kmeans-k5-s0"
    assert {"assignments.npy", "metrics.json"} <= {path.name for path in run.iterdir()}
    assert not (results / "digits-04" / "pixels" / "clusters" / "kmeans").exists()
    table = pd.read_parquet(results / "tables" / "clustering.parquet")
    assert table[["dataset", "backbone", "method", "k", "seed"]].values.tolist() == [["digits-04", "pixels", "kmeans", 5, 0]]
    ood = pd.read_parquet(results / "tables" / "ood.parquet")
    assert sorted(ood.scorer) == ["cluster-mahalanobis", "knn1"]
    diffusion = pd.read_parquet(results / "tables" / "diffusion.parquet")
    assert diffusion.cond.tolist() == ["clusters-kmeans-k5"]
    reconciled = yaml.safe_load((results / "tracking" / "reconciled.json").read_text())
    assert "error" not in reconciled and not reconciled["created"]  # every run was logged under its new folder
    assert not (results / "logs" / "job_server.log").exists()
