"""End to end with every stage: the real Snakefile on a tiny config with OOD pairs, attacks and diffusion, in a
temporary folder; which setting reruns which jobs."""

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import finished_sweep, run_workflow


OOD_TINY = {
    "sweep": "ood-tiny",
    "datasets": {"digits-04": {"source": "digits", "split": "train", "classes": [0, 1, 2, 3, 4]},
                 "digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "knn": {"k": 10},
    "clustering": {"k": [5], "seeds": [0],
                   "methods": {"kmeans": {"n_init": 2, "max_iter": 20, "datasets": ["digits-04"]}}},
    "ood": {
        "pairs": [{"name": "near", "in": "digits-04", "out": {"dataset": "digits", "classes": [5, 6, 7, 8, 9]}}],
        "scorers": ["knn1", "mahalanobis", "cluster-mahalanobis", "probe-energy", "probe-vim", "cluster-probe-gen"],
        "clusters": {"method": "kmeans", "k": 5, "seed": 0},
        "probe": {"epochs": 2},
        "bootstrap": {"resamples": 200},
        "adversarial": {"scorers": ["knn1"], "styles": {"patchy": 0.0}, "steps": 5, "n_images": 8},
    },
    "diffusion": {"datasets": ["digits-04"], "conditions": ["none", "class"], "clusters": {"methods": ["kmeans"], "k": [5]},
                  "seeds": [0, 1], "seeds_in_one_job": True,
                  "network": {"name": "mlp", "hidden": 16, "blocks": 1}, "edm": {"steps": 2}, "train_steps": 4,
                  "batch_size": 16, "checkpoint_every": 2, "n_samples": 16,
                  "metrics": {"networks": ["classifier", "backbone"], "classifier_epochs": 1, "kid_subsets": 10}},
}


SCORED = ["cluster-mahalanobis", "cluster-probe-gen", "knn1", "knn1-adv-patchy", "mahalanobis", "probe-energy",
          "probe-vim"]


@pytest.fixture(scope="module")
def ood_sweep(tmp_path_factory):
    return finished_sweep(tmp_path_factory.mktemp("ood"), OOD_TINY)


def test_ood_table_has_a_row_per_scorer_and_attack(ood_sweep):
    from lightning_modules.metrics.ood import ood_metrics

    table = pd.read_parquet(ood_sweep / "results" / "tables" / "ood.parquet")
    assert list(table.columns[:14]) == ["dataset", "backbone", "ood", "in", "out", "scorer", "base_scorer",
                                        "attack_style", "fit_labels", "auroc", "aupr_in", "aupr_out", "fpr95",
                                        "fpr95_openood"]
    assert sorted(table.scorer) == SCORED
    probes = pd.read_parquet(ood_sweep / "results" / "tables" / "ood_probes.parquet")
    assert probes.source.tolist() == ["classes", "clusters"] and (probes.n_fit == 721).all()
    assert set(probes.dataset) == {"digits-04"} and set(probes.backbone) == {"pixels"}
    assert probes.n_classes.tolist() == [5, 5]  # the digits 0-4, and k-means with K = 5
    assert set(table["in"]) == {"digits-04"} and set(table["out"]) == {"digits{5,6,7,8,9}"}
    assert table.auroc.between(0, 1).all()  # a 2-epoch probe need not beat chance; the others must
    assert table[~table.scorer.str.contains("probe")].auroc.between(0.5, 1).all()
    for name in ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_openood"):  # 95% bootstrap intervals
        assert (table[f"{name}_low"] <= table[name]).all() and (table[name] <= table[f"{name}_high"]).all()
    assert (table.auroc_high - table.auroc_low).gt(0).any()
    row = table.set_index("scorer").loc["cluster-mahalanobis"]
    assert row.fit_labels == "clusters" and row.n_fit == 721 and row.n_id == 180 and row.n_ood == 180
    attacked = table.set_index("scorer").loc["knn1-adv-patchy"]
    assert attacked.n_ood == 8 and attacked.attack_style == "patchy" and 0 <= attacked.auroc_clean <= 1
    # the table is the scores' metrics: recompute one row from its scores.npz
    with np.load(ood_sweep / "results" / "digits-04" / "pixels" / "ood" / "near" / "knn1" / "scores.npz") as scores:
        assert ood_metrics(scores["id"], scores["ood"])["auroc"] == pytest.approx(table.set_index("scorer").auroc["knn1"])


def test_ood_report_and_tracking(ood_sweep):
    html = (ood_sweep / "results" / "reports" / "ood.html").read_text()
    assert html.count("data:image/png;base64") >= 5  # heatmap, histograms, two failure grids, attack examples
    assert "Where the best detector fails" in html and "the number above an image is its score" in html
    notebook = nbformat.read(ood_sweep / "results" / "reports" / "ood.ipynb", as_version=4)
    assert not [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    client = MlflowClient(f"sqlite:///{ood_sweep}/results/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("ood-tiny").experiment_id])
    scored = sorted(r.data.tags["scorer"] for r in runs if "scorer" in r.data.tags)
    assert scored == SCORED
    probes = sorted(r.data.tags["source"] for r in runs if "source" in r.data.tags)
    assert probes == ["classes", "clusters"]  # one probe per label source, shared by its scores
    assert all("auroc" in r.data.metrics for r in runs if "scorer" in r.data.tags)


def test_diffusion_runs_per_condition_with_table_and_report(ood_sweep):
    table = pd.read_parquet(ood_sweep / "results" / "tables" / "diffusion.parquet")
    assert sorted(table.cond) == sorted(["class", "clusters-kmeans-k5", "none"] * 2)  # two seeds, one job each
    assert list(table.columns[:10]) == ["dataset", "cond", "method", "k", "seed", "uses_labels", "fd_backbone",
                                        "fd_classifier", "fd_floor_backbone", "fd_floor_classifier"]
    assert (table.train_steps == 4).all() and table.fd_classifier.gt(0).all()
    assert table.uses_labels.tolist() == [True] * 2 + [False] * 4
    assert table.class_consistency.isna().tolist() == [False] * 4 + [True] * 2
    run = ood_sweep / "results" / "digits-04" / "diffusion" / "clusters-kmeans-k5" / "seed0"
    assert np.load(run / "samples.npy").shape == (16, 1, 8, 8) and set(np.load(run / "labels.npy")) <= set(range(5))
    assert (run / "samples.png").read_bytes().startswith(b"\x89PNG")
    assert not (run / ".checkpoints").exists()
    html = (ood_sweep / "results" / "reports" / "diffusion.html").read_text()
    assert html.count("data:image/png;base64") >= 4  # the FD curve and a sample grid per condition
    assert "beats unconditional" in html and "Holm over" in html  # the first sentence: paired tests, one family
    # every diffusion run's scores reach the tracking store (the Lightning logger's params used to clash)
    client = MlflowClient(f"sqlite:///{ood_sweep}/results/mlflow.db")
    runs = [r for r in client.search_runs([client.get_experiment_by_name("ood-tiny").experiment_id])
            if "cond" in r.data.tags]
    assert sorted((r.data.tags["cond"], r.data.tags["seed"]) for r in runs) == sorted(zip(table.cond, table.seed.astype(str)))
    for run in runs:
        assert {"fd_classifier", "kid_classifier", "fd_floor_backbone", "train/loss"} <= set(run.data.metrics)
        assert run.info.status == "FINISHED"
        assert {"metrics.json", "samples.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    # the sweep ends by reconciling the store with every result; a clean sweep leaves nothing to repair
    reconciled = json.loads((ood_sweep / "results" / "tracking" / "reconciled.json").read_text())
    assert reconciled["results"] > len(table) and "error" not in reconciled
    assert not any(reconciled[key] for key in ("created", "completed", "deleted", "killed"))


def reversed_keys(value):
    """The same config with every mapping's keys in reverse order (what a YAML formatter may do)."""
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(item) for item in value]
    return value


def params_changes(workdir, config: dict) -> list[str]:
    """The outputs whose params would differ with `config` in the finished sweep `workdir` (its config restored),
    from `snakemake --summary`'s status column (a dry run does not show jobs below a checkpoint, and
    `--list-params-changes` lists every output in Snakemake 9.27)."""
    path = workdir / "config.yaml"
    original = path.read_text()
    try:
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        summary = run_workflow(workdir, "--summary")
    finally:
        path.write_text(original)
    assert summary.returncode == 0, summary.stderr[-2000:]
    rows = [line.split("\t") for line in summary.stdout.splitlines()]
    return [row[0] for row in rows if len(row) > 4 and row[4] == "params changed"]


def test_a_reordered_config_reruns_nothing(ood_sweep):
    """Params are compared by their repr: rules carry them with sorted keys, so the order of keys in the YAML
    file (a formatter, a dump with other settings) changes no job's params."""
    assert params_changes(ood_sweep, reversed_keys(OOD_TINY)) == []


def _set(config: dict, dotted: str, value) -> dict:
    changed = json.loads(json.dumps(config))
    *parents, key = dotted.split(".")
    target = changed
    for name in parents:
        target = target.setdefault(name, {})
    target[key] = value
    return changed


# setting changed -> the kinds of results whose jobs rerun for it (by their params); `tracking` is init_tracking,
# whose params are the whole config (it goes on the sweep's parent run) and which reruns nothing after it
RERUNS = [
    ("diffusion.lr", 5e-4, {"DiffusionRun", "tracking"}),  # not the feature classifier: it takes its own settings
    ("diffusion.metrics.classifier_epochs", 2, {"DiffusionClassifier", "DiffusionRun", "tracking"}),
    ("ood.bootstrap.resamples", 100, {"OodRun", "tracking"}),
    ("ood.probe.epochs", 3, {"OodProbe", "tracking"}),
    ("ood.adversarial.steps", 4, {"OodAttack", "tracking"}),
    ("clustering.methods.kmeans.max_iter", 30, {"ClusteringRun", "tracking"}),
    ("knn.query_batch", 128, {"KnnGraph", "tracking"}),
    ("tracking_uri", "sqlite:///elsewhere.db", {"tracking"}),  # a new tracking target reruns no computation
    ("sweep", "renamed", {"tracking"}),
    ("embed.threads", 1, {"tracking"}),
]


@pytest.mark.parametrize("setting, value, kinds", RERUNS, ids=[row[0] for row in RERUNS])
def test_a_setting_reruns_exactly_the_jobs_whose_result_it_changes(ood_sweep, setting, value, kinds):
    from lightning_modules.core.layout import TRACKING_EXPERIMENT, parse

    listed = params_changes(ood_sweep, _set(OOD_TINY, setting, value))
    found = {"tracking" if path.endswith(TRACKING_EXPERIMENT) else type(parse(path)).__name__ for path in listed}
    assert found == kinds, listed
