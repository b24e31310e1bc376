"""The shared tracking server (`make mlflow-server`): MLflow with its basic-auth app, so that on a cluster
network only its owners can read or change a lab's runs.

What it trusts and keeps where (all under `<results>/tracking-auth/`, a 0700 folder):
- `admin-password` (0600): the admin's password, made once with `secrets`; it reaches MLflow through the
  environment (MLFLOW_AUTH_ADMIN_PASSWORD), never a command line or a log;
- `credentials` (0600): `username` / `password` lines that jobs read (`CLUSTERLAB_TRACKING_CREDENTIALS` names the
  file; the slurm profile's jobs inherit it) and turn into MLFLOW_TRACKING_USERNAME / _PASSWORD;
- `basic_auth.ini`, `basic_auth.db`: MLflow's users and permissions (default permission READ: a user made with
  `mlflow.server.auth.client.AuthServiceClient` can read, not write, until granted more);
- `flask-secret` (0600): the CSRF secret the auth app needs.
A request without valid credentials is refused (401). Binding an address other than loopback without auth is
refused unless `--insecure` says so.

The runs' store is `<results>/mlflow.db` (SQLite, the embedded default) or the database `--database` names: for a
lab's server PostgreSQL (`postgresql://user@host:port/db`; the `server` extra installs its driver), whose password
comes from libpq's own places (PGPASSWORD, ~/.pgpass), never the URL on a command line. The store's address reaches
MLflow through its environment (MLFLOW_BACKEND_STORE_URI), not the process's arguments.

    python -m lightning_modules.services.tracking_server --results results --host 127.0.0.1 --port 5000 \
        [--database postgresql://mlflow@127.0.0.1:5432/mlflow] [--no-auth]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from lightning_modules.core.layout import TRACKING_DATABASE

AUTH_DIR = "tracking-auth"
# MLflow's auth app checks the password's scrypt hash on every request (~0.1 s of CPU here): a server with many
# writers spends its cores on that. Its cache keeps a checked credential this long per worker (MLflow's
# basic_auth.ini: "a ~3x throughput improvement"); the cost: a changed password still works on other workers until
# then. tests/test_tracking_load.py measured the server without it at p50 27 s per call under 200 clients.
AUTH_CACHE_SECONDS = 60
# Each server worker runs MLflow's Flask handlers on anyio's thread pool (40 threads); SQLAlchemy's default pool
# (5 + 10 overflow) made the other 25 wait, and a request that waited 30 s failed as BAD_REQUEST, which clients do not
# retry: 15 of 200 clients gave up on PostgreSQL (tests/test_tracking_load.py, 2026-12-06). A connection per thread
# ends that; the database must then allow WORKERS x HANDLER_THREADS connections (PostgreSQL's default
# max_connections, 100, holds 2 workers: raise it before adding workers).
HANDLER_THREADS = 40
WORKERS = 2
ADMIN = "admin"
CREDENTIALS_ENV = "CLUSTERLAB_TRACKING_CREDENTIALS"


def _owner_only_file(path: Path, make) -> str:
    """The text of an owner-only file, created with `make()` when missing; refused when others can read it."""
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(make())
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} can be read by others (mode {oct(path.stat().st_mode & 0o777)}); "
                              f"chmod 600 it")
    return path.read_text()


def auth_folder(results_dir) -> Path:
    folder = Path(results_dir).resolve() / AUTH_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def prepare_auth(results_dir) -> dict:
    """The environment the auth app starts with; writes the admin password, the jobs' credentials file and the
    auth config on first use."""
    folder = auth_folder(results_dir)
    password = _owner_only_file(folder / "admin-password", lambda: secrets.token_urlsafe(24)).strip()
    _owner_only_file(folder / "credentials", lambda: f"username={ADMIN}\npassword={password}\n")
    secret = _owner_only_file(folder / "flask-secret", lambda: secrets.token_hex(32)).strip()
    ini = folder / "basic_auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = sqlite:///{folder / 'basic_auth.db'}\nadmin_username = {ADMIN}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                   f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n")
    return {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secret}


def read_credentials(path) -> dict:
    """`username=` / `password=` lines of an owner-only file -> MLFLOW_TRACKING_USERNAME / _PASSWORD."""
    path = Path(path)
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} can be read by others; chmod 600 it")
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {"MLFLOW_TRACKING_USERNAME": values["username"].strip(), "MLFLOW_TRACKING_PASSWORD": values["password"].strip()}


def is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def backend_store(results_dir, database: str | None = None) -> str:
    """The runs' store: `database` when given, else SQLite in the results folder."""
    return database or f"sqlite:///{Path(results_dir).resolve() / TRACKING_DATABASE}"


def server_command(results_dir, host: str, port: int, auth: bool, workers: int = WORKERS) -> list[str]:
    """`mlflow server` without the store's address (it goes in MLFLOW_BACKEND_STORE_URI: it may carry a password)."""
    results = Path(results_dir).resolve()
    command = [shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow")), "server",
               "--artifacts-destination", str(results / "mlartifacts"), "--host", host, "--port", str(port),
               "--workers", str(workers)]
    return command + (["--app-name", "basic-auth"] if auth else [])


def pool_environment() -> dict[str, str]:
    """SQLAlchemy's pool per worker: a connection for every handler thread, none waited for (see HANDLER_THREADS)."""
    return {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(HANDLER_THREADS), "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "0"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The shared MLflow tracking server, with authentication.")
    parser.add_argument("--results", default="results")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--database", help="the runs' store (SQLAlchemy URL, e.g. postgresql://user@host:port/db); "
                                           "default: SQLite in --results")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"server processes; the database must allow workers x {HANDLER_THREADS} connections")
    parser.add_argument("--no-auth", action="store_true", help="serve without authentication (loopback only)")
    parser.add_argument("--insecure", action="store_true", help="allow --no-auth on a non-loopback address")
    args = parser.parse_args(argv)
    if args.no_auth and not is_loopback(args.host) and not args.insecure:
        print(f"error: refusing to serve the tracking store without authentication on {args.host}: anyone on that "
              f"network could read, change or delete the runs (drop --no-auth, or add --insecure to force it)",
              file=sys.stderr)
        return 2
    Path(args.results).mkdir(parents=True, exist_ok=True)
    env = {**pool_environment(), **os.environ, "MLFLOW_BACKEND_STORE_URI": backend_store(args.results, args.database)}
    if not args.no_auth:
        env.update(prepare_auth(args.results))
        print(f"tracking server with authentication; jobs read their credentials from "
              f"{auth_folder(args.results) / 'credentials'} (export {CREDENTIALS_ENV}=that path)", flush=True)
    command = server_command(args.results, args.host, args.port, auth=not args.no_auth, workers=args.workers)
    os.execve(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
