import logging

from mlflow.tracking import MlflowClient

from lightning_modules.tracking import default_tracking_uri, init_tracking, log_run


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
    assert run.info.run_name == "results/digits/pixels/clusters/kmeans/k10/seed0"
    assert run.info.status == "FINISHED"
    assert run.data.tags["dataset"] == "digits" and run.data.tags["k"] == "10"
    assert run.data.params == {"n_init": "10", "nested.a": "1"}
    assert run.data.metrics == {"acc": 0.5, "clusters_used": 10.0}  # undefined values are left out
    assert [a.path for a in MlflowClient(uri).list_artifacts(run_id)] == ["metrics.json"]
    assert (tmp_path / "artifacts").is_dir()


def test_init_is_idempotent(tmp_path):
    uri = default_tracking_uri(tmp_path)
    assert init_tracking(uri, "s")["experiment_id"] == init_tracking(uri, "s")["experiment_id"]


def test_an_unusable_store_warns_and_loses_nothing(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("lightning_modules.tracking.RETRIES", 1)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    uri = f"sqlite:///{blocker}/mlflow.db"  # its parent is a file: the store cannot be created
    with caplog.at_level(logging.WARNING):
        assert "error" in init_tracking(uri, "s")
        assert log_run(uri, "s", "run", {}, {}, {"acc": 1.0}) is None
    assert sum("MLflow" in r.message for r in caplog.records if r.levelno == logging.WARNING) == 2
