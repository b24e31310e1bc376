"""End to end: the real Snakefile on a tiny config, in a temporary folder."""

import json
import shutil

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import SMALL_HEAD, finished_sweep, run_workflow, sweep_job_server_log
from lightning_modules.analysis.claims.ledger import VERDICTS
from lightning_modules.analysis.reporting import end_message
from lightning_modules.services.tracking import PARENT_TAG, ROLE_TAG

TINY = {
    "sweep": "tiny",
    "datasets": {"digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "knn": {"k": 10},
    "clustering": {
        "k": [5, 10],
        "seeds": [0, 1],
        "methods": {
            "kmeans": {"n_init": 2, "max_iter": 20},
            "temi": {"k": [10], **SMALL_HEAD},
            "dec": {"k": [10], "seeds": [0], "epochs": 2, "batch_size": 64, "progress": False},
        },
        "upper_bound": {"enabled": True, "k": 30, "temi": SMALL_HEAD},
    },
}
RUNS = [("kmeans", 5, 0), ("kmeans", 5, 1), ("kmeans", 10, 0), ("kmeans", 10, 1), ("temi", 10, 0), ("temi", 10, 1),
        ("dec", 10, 0)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return finished_sweep(tmp_path_factory.mktemp("sweep"), TINY)


def test_table_has_one_row_per_run(sweep):
    table = pd.read_parquet(sweep / "results" / "tables" / "clustering.parquet")
    assert list(table.columns[:11]) == ["dataset", "backbone", "method", "k", "seed", "acc", "acc_majority", "nmi",
                                        "ari", "ami", "clusters_used"]
    assert sorted(zip(table.method, table.k, table.seed)) == sorted(RUNS)
    assert set(table.dataset) == {"digits"} and set(table.backbone) == {"pixels"}
    assert (table.n_samples == 360).all()
    assert table.loc[table.method == "kmeans"].loc[table.k == 10, "acc"].min() > 0.5
    assert table.knn_agreement.between(0, 1).all()
    assert table.loc[table.method == "temi", "selected_head"].isin([0, 1]).all()
    bounds = pd.read_parquet(sweep / "results" / "tables" / "cluster_bounds.parquet")
    assert len(bounds) == 1 and bounds.k_trained[0] == 30 and 1 <= bounds.bound[0] <= 30


def test_the_sweep_ran_its_jobs_in_the_test_sessions_job_server_and_started_none(sweep):
    assert not (sweep / "results" / "logs" / "job_server.log").exists()
    assert "modules preloaded" in sweep_job_server_log().read_text()


def test_artifacts_follow_the_documented_layout(sweep):
    clusters = sweep / "results" / "digits" / "pixels" / "clusters"
    assert {p.name for p in (clusters / "kmeans" / "k10" / "seed1").iterdir()} == {"assignments.npy", "metrics.json"}
    assert {p.name for p in (clusters / "temi" / "k10" / "seed1").iterdir()} == {"assignments.npy", "probs.npy",
                                                                              "metrics.json"}
    assert (clusters / "bound.json").exists()
    knn = sweep / "results" / "digits" / "pixels" / "knn"
    assert {p.name for p in knn.iterdir()} == {"test.k10.npy", "test.k10.dist.npy", "test.k10.meta.json"}
    embeddings = sweep / "results" / "digits" / "pixels" / "embeddings"
    assert {p.name for p in embeddings.iterdir()} == {"test.npy", "test.labels.npy", "test.meta.json"}
    assert (sweep / "results" / "logs" / "cluster" / "digits" / "pixels" / "clusters" / "kmeans" / "k10" / "seed1.log").exists()


def test_report_is_executed_with_plots_embedded(sweep):
    html = (sweep / "results" / "reports" / "clustering.html").read_text()
    assert "data:image/png;base64" in html
    notebook = nbformat.read(sweep / "results" / "reports" / "clustering.ipynb", as_version=4)
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert "vs kmeans" in html and "(Holm p " in html  # the paired summary opens the report, adjusted over its family
    assert "came closest, picking" in html  # the label-free choice and its regret


def test_label_free_selection_picks_one_configuration_per_criterion(sweep):
    selection = pd.read_parquet(sweep / "results" / "tables" / "selection.parquet")
    from lightning_modules.clustering import SELECTION_CRITERIA
    from lightning_modules.core.checks import schema_defaults

    default = schema_defaults("clustering")["selection_criterion"]
    assert selection.criterion.tolist() == [default, *(n for n in SELECTION_CRITERIA.names() if n != default)]
    picked = selection[selection.method.notna()]  # stability picks nothing where a configuration has one seed
    configurations = {(method, k) for method, k, _ in RUNS}
    assert set(zip(picked.method, picked.k.astype(int))) <= configurations
    assert (picked.nmi_regret >= 0).all() and (picked.best_nmi <= 1).all()
    curves = pd.read_parquet(sweep / "results" / "tables" / "selection_curves.parquet")
    assert set(curves.criterion) == set(SELECTION_CRITERIA.names()) and curves.picked.any()
    record = json.loads((sweep / "results" / "digits" / "pixels" / "selection" / "selection.json").read_text())
    assert len(record["runs"]) == len(RUNS) and {c["seeds"] for c in record["configurations"]} == {1, 2}


def test_one_mlflow_run_per_table_row_nested_under_the_sweeps_run(sweep):
    client = MlflowClient(f"sqlite:///{sweep}/results/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    everything = client.search_runs([experiment.experiment_id])
    parents = [r for r in everything if r.data.tags.get(ROLE_TAG) == "sweep"]
    assert len(parents) == 1 and parents[0].info.run_name == "sweep tiny" and parents[0].info.status == "FINISHED"
    assert "clustering.methods" in parents[0].data.params
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"config.yaml", "reports", "claims"} <= artifacts
    figures = [a.path for a in client.list_artifacts(parents[0].info.run_id, "reports/clustering")]
    assert "reports/clustering/clustering.html" in figures and "reports/clustering/figure-01.png" in figures
    children = [r for r in everything if r not in parents]
    assert all(r.data.tags.get(PARENT_TAG) == parents[0].info.run_id for r in children)
    # the clustering table's rows and the cluster-bounds table's row, nothing else
    bound = [r for r in children if "method" not in r.data.tags]
    assert len(bound) == 1 and bound[0].info.run_name == "cluster bound · digits/pixels"
    table = pd.read_parquet(sweep / "results" / "tables" / "cluster_bounds.parquet")
    assert bound[0].data.metrics["bound"] == table.bound[0]
    runs = [r for r in children if "method" in r.data.tags]
    assert sorted((r.data.tags["method"], int(r.data.tags["k"]), int(r.data.tags["seed"])) for r in runs) == sorted(RUNS)
    assert all("acc" in r.data.metrics and r.info.status == "FINISHED" for r in runs)
    # heads log their training curves into the same run as their final metrics
    temi = [r for r in runs if r.data.tags["method"] == "temi"]
    assert all("train/loss_mean_over_heads" in r.data.metrics for r in temi)
    history = client.get_metric_history(temi[0].info.run_id, "train/loss_mean_over_heads")
    assert len(history) == 2  # one point per epoch


def snakemake_log_span(workdir) -> float:
    """Seconds from the first to the last timestamp of the workflow's (only) Snakemake log."""
    import datetime

    (log,) = (workdir / ".snakemake" / "log").glob("*.snakemake.log")
    stamps = [datetime.datetime.strptime(line.strip()[1:-1], "%a %b %d %H:%M:%S %Y")
              for line in log.read_text().splitlines() if line.startswith("[") and line.strip().endswith("]")]
    return (stamps[-1] - stamps[0]).total_seconds()


def test_the_sweeps_mlflow_run_spans_the_sweep_and_carries_its_headlines(sweep):
    client = MlflowClient(f"sqlite:///{sweep}/results/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    (parent,) = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(ROLE_TAG) == "sweep"]
    duration = (parent.info.end_time - parent.info.start_time) / 1000
    span = snakemake_log_span(sweep)  # first job's start to the last job's end, to the second
    assert abs(duration - span) <= max(5.0, 0.1 * span), (duration, span)
    selection = pd.read_parquet(sweep / "results" / "tables" / "selection.parquet").iloc[0]
    assert parent.data.metrics["pick_acc.digits.pixels"] == pytest.approx(selection.acc)
    ledger = pd.read_parquet(sweep / "results" / "tables" / "claims.parquet")
    counts = {f"claims_{verdict.replace(' ', '_')}": float((ledger.verdict == verdict).sum()) for verdict in VERDICTS}
    assert sum(counts.values()) == len(ledger) == 13
    assert {name: value for name, value in parent.data.metrics.items() if name.startswith("claims_")} == counts
    assert "clustering: label-free pick" in parent.data.tags["mlflow.note.content"]
    assert "reports/clustering/clustering.html" in parent.data.tags["mlflow.note.content"]
    record = json.loads((sweep / "results" / "tracking" / "sweep.json").read_text())
    assert record["sweep_run_id"] == parent.info.run_id and record["end_time"] == parent.info.end_time


def test_the_selected_run_is_drawn_and_its_figures_are_on_its_mlflow_run(sweep):
    figures = sweep / "results" / "digits" / "pixels" / "figures"
    assert {p.name for p in figures.iterdir() if not p.name.startswith(".")} == {"gallery.json", "gallery.png",
                                                                                 "matrix.png", "map.png"}
    record = json.loads((figures / "gallery.json").read_text())
    pick = json.loads((sweep / "results" / "digits" / "pixels" / "selection" / "selection.json").read_text())["picks"][0]
    assert record["run"].endswith(f"clusters/{pick['method']}/k{pick['k']}/seed0")
    assert sum(c["size"] for c in record["clusters"]) == 360 and all(len(c["rows"]) <= 8 for c in record["clusters"])
    coordinates = np.load(sweep / "results" / "digits" / "pixels" / "map" / "test.npy")
    assert coordinates.shape == (360, 2) and np.isfinite(coordinates).all()
    html = (sweep / "results" / "reports" / "clustering.html").read_text()
    assert "What the clusters look like" in html and 'alt="figures/gallery.png"' in html
    client = MlflowClient(f"sqlite:///{sweep}/results/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    (run,) = [r for r in client.search_runs([experiment.experiment_id])
              if r.data.tags.get("clusterlab.artifact_path", "").endswith(record["run"].split("results/", 1)[1])]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "figures")} == {
        "figures/gallery.png", "figures/matrix.png", "figures/map.png"}


def test_the_end_message_lists_every_report_and_table_and_the_runs_table(sweep):
    lines = end_message(sweep / "results", "http://127.0.0.1:5000")
    reports = next(line for line in lines if line.startswith("Reports:"))
    tables = next(line for line in lines if line.startswith("Tables:"))
    assert "clustering.html" in reports
    assert all(name in tables for name in ("clustering.parquet", "selection.parquet", "cluster_bounds.parquet"))
    assert any(line.startswith("clustering: label-free pick") for line in lines)
    experiment = json.loads((sweep / "results" / "tracking" / "experiment.json").read_text())["experiment_id"]
    assert lines[-1].endswith(f"/#/experiments/{experiment}/runs?workflowType=machine_learning")


def test_the_claims_ledger_gives_every_finding_a_verdict(sweep):
    from lightning_modules.analysis.claims.ledger import CLAIMS, VERDICTS

    ledger = pd.read_parquet(sweep / "results" / "tables" / "claims.parquet")
    assert list(ledger.claim) == list(CLAIMS) and set(ledger.verdict) <= set(VERDICTS)
    row = ledger.set_index("claim").loc["C1"]  # TEMI and DEC against k-means at K = 10, paired on seed
    assert row.verdict != "not testable" and row.n >= 2 and row.unit.startswith("seed")
    assert ledger.set_index("claim").loc["C9", "reason"] == "no ood table"  # this sweep has no OOD stage
    # registered by the sweep's first job, before any result, and unchanged since
    assert set(ledger.analysis_state) == {"pre-registered"}
    registration = json.loads((sweep / "results" / "tracking" / "claims-registration.json").read_text())
    assert registration["after_results"] is False and ledger.analysis_registered_at.iloc[0] == registration[
        "registered_at"]
    client = MlflowClient(f"sqlite:///{sweep}/results/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    (parent,) = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(ROLE_TAG) == "sweep"]
    assert parent.data.params["claims.code_sha256"] == registration["code_sha256"]
    html = (sweep / "results" / "reports" / "claims.html").read_text()
    assert "findings" in html and html.count("data:image/png;base64") >= 1
    assert any(line.startswith("claims: ") for line in end_message(sweep / "results", "http://127.0.0.1:5000"))


def test_second_run_has_nothing_to_do(sweep):
    result = run_workflow(sweep)
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_snakemake_report_holds_the_reports_and_tables_with_captions(sweep):
    """`snakemake --report` (make report): one HTML file carrying the clustering report and its tables."""
    result = run_workflow(sweep, "--report", str(sweep / "report.html"))
    assert result.returncode == 0, result.stderr[-2000:]
    html = (sweep / "report.html").read_text(errors="replace")
    assert "clustering.html" in html and "clustering.parquet" in html and "who beats k-means" in html
    assert "Could not detect mimetype" not in result.stderr


def without_timing(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="seconds").sort_values(["method", "k", "seed"]).reset_index(drop=True)


def test_a_deleted_result_is_rebuilt_by_the_same_command(sweep):
    """A table, the ledger, a report, a figure folder and one run's folder, deleted, come back from the plain command
    with the same content (the run's own timing aside): the default target asks for every artifact a user reads.
    Last of the tests on `sweep`: the rerun's jobs log to its store again."""
    results = sweep / "results"
    table, ledger = results / "tables" / "clustering.parquet", results / "tables" / "claims.parquet"
    report, figures = results / "reports" / "clustering.html", results / "digits" / "pixels" / "figures"
    run = results / "digits" / "pixels" / "clusters" / "kmeans" / "k5" / "seed0"
    before = {"table": without_timing(pd.read_parquet(table)), "ledger": pd.read_parquet(ledger),
              "record": {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k != "seconds"},
              "assignments": np.load(run / "assignments.npy"), "figures": sorted(p.name for p in figures.iterdir()),
              "gallery": (figures / "gallery.json").read_text()}
    for path in (table, ledger, report):
        path.unlink()
    for folder in (figures, run):
        shutil.rmtree(folder)
    result = run_workflow(sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    assert {k: v for k, v in record.items() if k != "seconds"} == before["record"]
    np.testing.assert_array_equal(np.load(run / "assignments.npy"), before["assignments"])
    pd.testing.assert_frame_equal(without_timing(pd.read_parquet(table)), before["table"])
    pd.testing.assert_frame_equal(pd.read_parquet(ledger), before["ledger"])
    assert sorted(p.name for p in figures.iterdir()) == before["figures"]
    assert (figures / "gallery.json").read_text() == before["gallery"]
    assert "data:image/png;base64" in report.read_text()
    again = run_workflow(sweep)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_random_timm_vit_on_a_generated_image_folder(tmp_path):
    from test_datasets import write_image_folder

    write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=4, size=(8, 8), mode="L")
    config = {
        "sweep": "images",
        "datasets": {"shapes": {"source": "imagefolder", "root": str(tmp_path / "images")}},
        "backbones": [{"spec": "timm/vit_tiny_patch16_224", "pretrained": False}],
        "knn": {"k": 3},
        "clustering": {"k": [2, 3], "seeds": [0], "methods": {"kmeans": {"n_init": 2}}},
    }
    finished_sweep(tmp_path, config)
    table = pd.read_parquet(tmp_path / "results" / "tables" / "clustering.parquet")
    assert table.backbone.tolist() == ["timm-vit_tiny_patch16_224"] * 2 and table.n_samples.tolist() == [12, 12]
    meta = json.loads((tmp_path / "results" / "shapes" / "timm-vit_tiny_patch16_224" / "embeddings" / "all.meta.json").read_text())
    assert meta["dims"] == 192 and meta["backbone_options"] == {"pretrained": False}
    assert "size=(224, 224)" in meta["preprocessing"]


def test_changed_image_files_rerun_the_embedding(tmp_path):
    from test_datasets import write_image_folder

    write_image_folder(tmp_path / "images", classes=("a", "b"), per_class=3, size=(8, 8), mode="L")
    config = {
        "sweep": "files",
        "datasets": {"shapes": {"source": "imagefolder", "root": str(tmp_path / "images")}},
        "backbones": ["pixels"],
        "knn": {"k": 2},
        "clustering": {"k": [2], "seeds": [0], "methods": {"kmeans": {"n_init": 1}}},
    }
    finished_sweep(tmp_path, config)
    (tmp_path / "images" / "b" / "0.png").write_bytes((tmp_path / "images" / "a" / "0.png").read_bytes())
    dry_run = run_workflow(tmp_path, "-n", "--quiet", "progress")  # the profile hides rules and reasons
    assert dry_run.returncode == 0
    assert "rule embed:" in dry_run.stdout and "params" in dry_run.stdout


def test_diffusion_jobs_per_seed_or_per_condition(tmp_path):
    """Without seeds_in_one_job every seed is its own job (a GPU job each on clusters); with it one job per
    condition writes every seed's artifacts."""
    config = {"sweep": "plan", "datasets": {"digits": {"source": "digits", "split": "test"}}, "backbones": ["pixels"],
              "clustering": {"k": [5], "seeds": [0], "methods": {"kmeans": {}}},
              "diffusion": {"datasets": ["digits"], "conditions": ["none", "class"], "seeds": [0, 1, 2],
                            "network": {"name": "mlp"}, "metrics": {"networks": ["backbone"]}}}
    counts = {}
    for together in (False, True):
        config["diffusion"]["seeds_in_one_job"] = together
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        plan = run_workflow(tmp_path, "-n", "--quiet", "rules")
        assert plan.returncode == 0, plan.stderr[-2000:]
        counts[together] = int(next(line.split()[1] for line in plan.stdout.splitlines() if line.startswith("diffusion ")))
    assert counts == {False: 6, True: 2}
