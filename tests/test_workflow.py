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
