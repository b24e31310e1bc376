"""A lab's tracking server on PostgreSQL: `make mlflow-server MLFLOW_DATABASE=postgresql://...` with the auth app on
top, a real PostgreSQL from Debian's package (tests/postgres.py), the tiny sweep logging through it and reconciling
clean; the runs are rows of PostgreSQL, no SQLite file appears, and the password is on no command line."""

import json
import os

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import REPO, run_workflow, serving
from lightning_modules.services import tracking_server
from lightning_modules.services.tracking import result_runs
from postgres import PostgresServer
from slurm_cluster import free_port

SWEEP = {
    "sweep": "postgres",
    "datasets": {"digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "knn": {"k": 10},
    "clustering": {"k": [5, 10], "seeds": [0], "methods": {"kmeans": {"n_init": 2, "max_iter": 20}}},
}


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer(free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """`make mlflow-server` on the PostgreSQL store; the password reaches it as PGPASSWORD (libpq's own variable)."""
    results, port = tmp_path_factory.mktemp("tracking"), free_port()
    command = ["make", "-C", str(REPO), "mlflow-server", f"RESULTS={results}", f"MLFLOW_PORT={port}",
               f"MLFLOW_DATABASE={postgres.url}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", postgres.password)
        with serving(command, port) as (uri, process):
            yield uri, results, process


@pytest.fixture(scope="module")
def sweep(server, tmp_path_factory):
    uri, results, _ = server
    workdir = tmp_path_factory.mktemp("sweep")
    (workdir / "config.yaml").write_text(yaml.safe_dump({**SWEEP, "tracking_uri": uri}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(tracking_server.CREDENTIALS_ENV, str(results / tracking_server.AUTH_DIR / "credentials"))
        done = run_workflow(workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def test_the_sweep_logs_through_the_server_into_postgresql_and_reconciles_clean(sweep, server, postgres, monkeypatch):
    uri, results, _ = server
    for name, value in tracking_server.read_credentials(results / tracking_server.AUTH_DIR / "credentials").items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(uri)
    runs = result_runs(client, client.get_experiment_by_name("postgres").experiment_id)
    assert sorted((r.data.tags["method"], r.data.tags["k"]) for r in runs) == [("kmeans", "10"), ("kmeans", "5")]
    assert all(r.info.status == "FINISHED" and "acc" in r.data.metrics for r in runs)
    reconciled = json.loads((sweep / "results" / "tracking" / "reconciled.json").read_text())
    assert reconciled["results"] == 2
    assert not any(reconciled[key] for key in ("created", "completed", "deleted", "killed")), reconciled
    # the runs (the results', the sweep's parent) are PostgreSQL's rows; nothing went to a SQLite file
    everything = client.search_runs([client.get_experiment_by_name("postgres").experiment_id])
    assert int(postgres.query("SELECT count(*) FROM runs WHERE lifecycle_stage = 'active'")) == len(everything)
    assert not list(sweep.rglob("mlflow.db")) and not (results / "mlflow.db").exists()


def test_the_database_password_is_on_no_command_line(server, postgres):
    _, _, process = server
    for pid in [process.pid, *map(int, os.popen(f"pgrep -g {os.getpgid(process.pid)}").read().split())]:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            assert postgres.password.encode() not in handle.read()
