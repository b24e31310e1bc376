"""The shared tracking server with MLflow's basic-auth app (`make mlflow-server`): a request without
credentials is refused, a job with the owner's credentials file logs, a read-only user cannot write, secrets sit
in owner-only files and never on a command line, and serving without auth beyond loopback is refused."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode

import pytest

from conftest import serving
from lightning_modules.services import tracking_server
from slurm_cluster import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    results, port = tmp_path_factory.mktemp("tracking"), free_port()
    command = [sys.executable, "-m", "lightning_modules.services.tracking_server", "--results", str(results),
               "--port", str(port), "--workers", "1"]  # one server process is enough for these requests
    with serving(command, port) as (uri, process):
        yield uri, results, process


def request(uri: str, path: str, user: tuple[str, str] | None = None, body: dict | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if user:
        headers["Authorization"] = "Basic " + b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(uri + path, data=data, headers=headers), timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_request_without_credentials_is_refused(server):
    uri, _, _ = server
    assert request(uri, "/api/2.0/mlflow/experiments/search?max_results=1") == 401


def test_secrets_are_owner_only_and_never_on_the_command_line(server):
    _, results, process = server
    folder = results / tracking_server.AUTH_DIR
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("admin-password", "credentials", "flask-secret"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    password = (folder / "admin-password").read_text().strip()
    assert len(password) >= 24
    with open(f"/proc/{process.pid}/cmdline", "rb") as handle:
        assert password.encode() not in handle.read()


def test_a_job_with_the_credentials_file_logs_and_a_read_only_user_cannot_write(server, monkeypatch):
    from mlflow.server.auth.client import AuthServiceClient
    from mlflow.tracking import MlflowClient

    from lightning_modules.services.tracking import log_run

    uri, results, _ = server
    credentials = results / tracking_server.AUTH_DIR / "credentials"
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # set by the job below: undone after
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv(tracking_server.CREDENTIALS_ENV, str(credentials))
    log_run(uri, "authenticated", "digits/pixels/clusters/kmeans/k5/seed0", {"method": "kmeans"}, params={"k": 5},
            metrics={"acc": 0.5})
    client = MlflowClient(uri)  # the credentials are in the environment now
    experiment = client.get_experiment_by_name("authenticated")
    assert [r.data.metrics["acc"] for r in client.search_runs([experiment.experiment_id])] == [0.5]

    AuthServiceClient(uri).create_user("reader", "reader-password-123")
    reader = ("reader", "reader-password-123")
    assert request(uri, "/api/2.0/mlflow/experiments/search", reader, {"max_results": 5}) == 200  # may read
    assert request(uri, "/api/2.0/mlflow/runs/create", reader, {"experiment_id": experiment.experiment_id}) == 403


def test_no_auth_beyond_loopback_is_refused_in_one_line(tmp_path):
    refused = subprocess.run([sys.executable, "-m", "lightning_modules.services.tracking_server", "--results", str(tmp_path),
                              "--host", "0.0.0.0", "--no-auth"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and not list(tmp_path.iterdir())
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: refusing to serve")
    assert tracking_server.is_loopback("127.0.0.1") and not tracking_server.is_loopback("0.0.0.0")


def test_a_credentials_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "credentials"
    path.write_text("username=admin\npassword=x\n")
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        tracking_server.read_credentials(path)


def test_every_handler_thread_has_a_database_connection_within_postgresqls_default_limit():
    import anyio
    import anyio.to_thread

    async def handler_threads() -> int:  # the pool MLflow's server runs its Flask handlers on
        return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    pool = tracking_server.pool_environment()
    command = tracking_server.server_command("results", "127.0.0.1", 5000, auth=True)
    workers = int(command[command.index("--workers") + 1])
    assert int(pool["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]) == tracking_server.HANDLER_THREADS == anyio.run(handler_threads)
    assert pool["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] == "0"
    # PostgreSQL's default max_connections (100) less the 3 it reserves for superusers
    assert workers * tracking_server.HANDLER_THREADS <= 97
