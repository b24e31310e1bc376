"""End to end: the real Snakefile on a tiny config, in a temporary folder."""

import subprocess

import nbformat
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import REPO, SNAKEMAKE

TINY = {
    "sweep": "tiny",
    "datasets": {"digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "clustering": {"k": [5, 10], "seeds": [0, 1], "methods": {"kmeans": {"n_init": 2, "max_iter": 20}}},
}


def run_workflow(workdir, *extra):
    return subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "workflow" / "profiles" / "local"),
         "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2", *extra],
        capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    result = run_workflow(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_table_has_one_row_per_run(sweep):
    table = pd.read_parquet(sweep / "results" / "tables" / "clustering.parquet")
    assert list(table.columns[:11]) == ["dataset", "backbone", "method", "k", "seed", "acc", "acc_majority", "nmi",
                                        "ari", "ami", "clusters_used"]
    assert sorted(zip(table.k, table.seed)) == [(5, 0), (5, 1), (10, 0), (10, 1)]
    assert set(table.dataset) == {"digits"} and set(table.backbone) == {"pixels"} and set(table.method) == {"kmeans"}
    assert (table.n_samples == 360).all()
    assert table.loc[table.k == 10, "acc"].min() > 0.5


def test_artifacts_follow_the_documented_layout(sweep):
    run = sweep / "results" / "digits" / "pixels" / "clusters" / "kmeans" / "k10" / "seed1"
    assert {p.name for p in run.iterdir()} == {"assignments.npy", "metrics.json"}
    embeddings = sweep / "results" / "digits" / "pixels" / "embeddings"
    assert {p.name for p in embeddings.iterdir()} == {"test.npy", "test.labels.npy", "test.meta.json"}
    assert (sweep / "results" / "logs" / "cluster" / "digits" / "pixels" / "kmeans" / "k10" / "seed1.log").exists()


def test_report_is_executed_with_plots_embedded(sweep):
    html = (sweep / "results" / "reports" / "clustering.html").read_text()
    assert "data:image/png;base64" in html
    notebook = nbformat.read(sweep / "results" / "reports" / "clustering.ipynb", as_version=4)
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_one_mlflow_run_per_table_row(sweep):
    client = MlflowClient(f"sqlite:///{sweep}/results/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4
    assert {(r.data.tags["k"], r.data.tags["seed"]) for r in runs} == {("5", "0"), ("5", "1"), ("10", "0"), ("10", "1")}
    assert all("acc" in r.data.metrics and r.info.status == "FINISHED" for r in runs)


def test_second_run_has_nothing_to_do(sweep):
    result = run_workflow(sweep)
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr
