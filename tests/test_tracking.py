import logging
import socket

import pytest
from mlflow.tracking import MlflowClient

import forks
from lightning_modules.services import tracking
from lightning_modules.services.tracking import ARTIFACT_TAG, default_tracking_uri, init_tracking, log_run, result_runs


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch):
    monkeypatch.setattr(tracking, "_unavailable", set())


def test_a_run_is_logged_with_tags_params_metrics_and_artifact(tmp_path):
    uri = default_tracking_uri(tmp_path)
    created = init_tracking(uri, "unit-sweep", artifact_root=tmp_path / "artifacts")
    assert "error" not in created
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text('{"acc": 0.5}')
    run_id = log_run(
        uri, "unit-sweep", run_name="results/digits/pixels/clusters/kmeans/k10/seed0",
        tags={"dataset": "digits", "k": "10"}, params={"n_init": 10, "nested": {"a": 1}},
        metrics={"acc": 0.5, "nmi": float("nan"), "inertia": None, "clusters_used": 10},
        artifacts=[metrics_file],
    )
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.run_name == "kmeans k10 s0 · digits/pixels"  # short in the table, the folder as a tag
    assert run.data.tags[ARTIFACT_TAG] == "results/digits/pixels/clusters/kmeans/k10/seed0"
    assert run.info.status == "FINISHED"
    assert run.data.tags["dataset"] == "digits" and run.data.tags["k"] == "10"
    experiment = MlflowClient(uri).get_experiment_by_name("unit-sweep")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs table
    assert run.data.params == {"n_init": "10", "nested.a": "1"}
    assert run.data.metrics == {"acc": 0.5, "clusters_used": 10.0}  # undefined values are left out
    assert [a.path for a in MlflowClient(uri).list_artifacts(run_id)] == ["metrics.json"]
    assert (tmp_path / "artifacts").is_dir()


def test_init_is_idempotent(tmp_path):
    uri = default_tracking_uri(tmp_path)
    assert init_tracking(uri, "s")["experiment_id"] == init_tracking(uri, "s")["experiment_id"]


def test_an_unusable_store_warns_and_loses_nothing(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("lightning_modules.services.tracking.RETRIES", 1)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    uri = f"sqlite:///{blocker}/mlflow.db"  # its parent is a file: the store cannot be created
    with caplog.at_level(logging.WARNING):
        assert "error" in init_tracking(uri, "s")
        assert log_run(uri, "s", "run", {}, {}, {"acc": 1.0}) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "lightning_modules.services.tracking"]
    assert len(warnings) == 1 and "results are still written to disk" in warnings[0].getMessage()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_job_with_an_unreachable_server_keeps_its_result_and_warns_once(tmp_path, caplog, digits_pixels):
    from lightning_modules.clustering.knn import build_knn_graph
    from lightning_modules.clustering.run import run_clustering_job
    from lightning_modules.embeddings.artifact import write_embeddings

    x, y = digits_pixels
    write_embeddings(tmp_path / "emb", "all", x[:300], y[:300], {})
    build_knn_graph(tmp_path / "emb", "all", 5, tmp_path / "knn")
    uri = f"http://127.0.0.1:{closed_port()}"
    with caplog.at_level(logging.WARNING):
        for method, params in (("kmeans", {"n_init": 1}), ("dec", {"epochs": 1, "progress": False})):
            record = run_clustering_job(uri, "sweep", {"method": method}, embeddings_dir=tmp_path / "emb",
                                        split="all", method=method, params=params, k=10, seed=0,
                                        out_dir=tmp_path / method, knn_dir=tmp_path / "knn", graph_k=5)
            assert (tmp_path / method / "metrics.json").exists() and record["acc"] > 0.3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "lightning_modules.services.tracking"]
    assert len(warnings) == 1 and uri in warnings[0].getMessage()


LOGGER_SCRIPT = """
import sys
from lightning_modules.services.tracking import log_run
uri, worker = sys.argv[1], sys.argv[2]
for run in range(3):
    assert log_run(uri, "parallel", f"w{worker}-r{run}", {"worker": worker}, {"n": 1}, {"acc": 0.5}) is not None
"""


def test_eight_parallel_jobs_log_every_run_to_sqlite(tmp_path):
    uri = default_tracking_uri(tmp_path)
    init_tracking(uri, "parallel")  # what the workflow's init_tracking rule does before the fan-out
    workers = [forks.Fork(LOGGER_SCRIPT, [uri, str(w)]) for w in range(8)]  # eight processes, their imports shared
    for worker in workers:
        done = worker.wait(timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    experiment = MlflowClient(uri).get_experiment_by_name("parallel")
    runs = result_runs(MlflowClient(uri), experiment.experiment_id)
    assert sorted(r.info.run_name for r in runs) == sorted(f"w{w}-r{r}" for w in range(8) for r in range(3))
    assert all(r.info.status == "FINISHED" for r in runs)


def test_reconciliation_makes_the_store_mirror_the_results_exactly(tmp_path, monkeypatch):
    """A dropped run, a run finished without some metrics, a duplicate left RUNNING by a killed retry and an
    orphan RUNNING run: afterwards one FINISHED run per result folder with all its metrics, the orphan KILLED;
    a second pass repairs nothing; an unusable store is reported, not raised."""
    import json

    from mlflow.entities import ViewType

    from lightning_modules.services.tracking import reconcile

    uri = default_tracking_uri(tmp_path)
    init_tracking(uri, "s")
    files = []
    for name, acc in (("a", 0.5), ("b", 0.6), ("c", 0.7)):
        folder = tmp_path / "results" / name
        folder.mkdir(parents=True)
        record = {"dataset": "digits", "method": name, "k": 10, "seed": 0, "acc": acc, "nmi": acc / 2,
                  "params": {"lr": 0.1}}
        (folder / "metrics.json").write_text(json.dumps(record))
        files.append(folder / "metrics.json")
        # a: its results never reached the store (only a training curve did, as when tracking failed mid-job)
        logged = {"train/loss": 1.0} if name == "a" else {"acc": acc, "nmi": acc / 2}
        log_run(uri, "s", str(folder), {"method": name}, {"lr": 0.1}, logged)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("s").experiment_id
    by_name = {r.data.tags[ARTIFACT_TAG]: r for r in result_runs(client, experiment)}
    client.delete_run(by_name[str(tmp_path / "results" / "b")].info.run_id)  # dropped from the store
    client.create_run(experiment, run_name=str(tmp_path / "results" / "c"))  # a killed retry's RUNNING duplicate
    orphan = client.create_run(experiment, run_name=str(tmp_path / "results" / "d"))  # killed, no result

    repaired = reconcile(uri, "s", files)
    assert repaired["created"] == [str(tmp_path / "results" / "b")]
    assert repaired["completed"] == [str(tmp_path / "results" / "a")]
    assert repaired["deleted"] == [str(tmp_path / "results" / "c")]
    assert repaired["killed"] == [str(tmp_path / "results" / "d")]
    runs = result_runs(client, experiment, run_view_type=ViewType.ACTIVE_ONLY)
    finished = sorted(r.data.tags[ARTIFACT_TAG] for r in runs if r.info.status == "FINISHED")
    assert finished == [str(tmp_path / "results" / n) for n in "abc"]
    for run in runs:
        if run.info.status == "FINISHED":
            assert {"acc", "nmi"} <= set(run.data.metrics) and run.data.params["lr"] == "0.1"
    recreated = next(r for r in runs if r.data.tags.get(ARTIFACT_TAG, "").endswith("/b"))
    assert recreated.data.tags["method"] == "b" and recreated.data.tags["dataset"] == "digits"
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    again = reconcile(uri, "s", files)
    assert not any(again[key] for key in ("created", "completed", "deleted", "killed"))

    monkeypatch.setattr("lightning_modules.services.tracking.RETRIES", 1)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    assert "error" in reconcile(f"sqlite:///{blocker}/mlflow.db", "s", files)


@pytest.mark.parametrize("path, name", [
    ("results/digits/pixels/clusters/temi/k10/seed0", "temi k10 s0 · digits/pixels"),
    ("results/digits-04/pixels/ood/digits04-vs-noise/knn1", "knn1 · digits04-vs-noise · pixels"),
    ("results/digits-04/pixels/ood/probes/classes", "probe classes · digits-04/pixels"),
    ("results/digits/diffusion/clusters-kmeans-k5/seed2", "clusters-kmeans-k5 s2 · digits diffusion"),
    ("/abs/results/x/y/z", "x/y/z"),
])
def test_runs_show_short_names(path, name):
    from lightning_modules.services.tracking import display_name

    assert display_name(path) == name
