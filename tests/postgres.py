"""A PostgreSQL server for tests, from Debian's `postgresql` package (installed with apt-get where missing): a data
folder in a temporary place the `postgres` system user owns (PostgreSQL refuses to run as root), loopback only on a
free port, one database and its owner with a password; stopped and removed afterwards, also when the test fails.
See shared/notes/postgresql.md."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from debian import apt_install, require_root, unavailable

SYSTEM_USER = "postgres"


def _programs() -> Path | None:
    """The folder of initdb / pg_ctl (Debian keeps them off PATH, per major version)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_postgres(*command, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", SYSTEM_USER, "--", *command], capture_output=True, text=True,
                          timeout=timeout)


class PostgresServer:
    """`with PostgresServer(port) as server:` `server.url` (no password in it) and `server.password` (for
    PGPASSWORD) of the database `mlflow` owned by the role `mlflow`."""

    database = role = "mlflow"

    def __init__(self, port: int):
        self.port, self.password = port, secrets.token_urlsafe(16)
        self.folder: Path | None = None
        self.url = f"postgresql://{self.role}@127.0.0.1:{port}/{self.database}"

    def __enter__(self) -> "PostgresServer":
        require_root("PostgreSQL as the postgres user")
        if _programs() is None and (reason := apt_install(["postgresql"], "PostgreSQL")):
            unavailable(reason)
        self.bin = _programs()
        self.folder = Path(tempfile.mkdtemp(prefix="clusterlab-postgres-"))
        shutil.chown(self.folder, SYSTEM_USER)
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _step(self, what: str, *command) -> None:
        done = _as_postgres(*command)
        if done.returncode != 0:
            unavailable(f"PostgreSQL: {what} failed ({(done.stderr.strip().splitlines() or ['no output'])[-1]})")

    def _start(self) -> None:
        data, socket = self.folder / "data", self.folder
        self._step("initdb", str(self.bin / "initdb"), "-D", str(data), "-U", SYSTEM_USER, "--auth-local=trust",
                   "--auth-host=scram-sha-256", "--no-sync")
        self._step("pg_ctl start", str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.folder / "server.log"),
                   "-w", "-o", f"-h 127.0.0.1 -p {self.port} -k {socket}", "start")
        psql = [str(self.bin / "psql"), "-h", str(socket), "-p", str(self.port), "-U", SYSTEM_USER,
                "-v", "ON_ERROR_STOP=1"]
        self._step("creating the role and database", *psql,
                   "-c", f"CREATE ROLE {self.role} LOGIN PASSWORD '{self.password}'",
                   "-c", f"CREATE DATABASE {self.database} OWNER {self.role}")

    def query(self, sql: str) -> str:
        """One value from the database, as the `postgres` user over the server's socket."""
        done = _as_postgres(str(self.bin / "psql"), "-h", str(self.folder), "-p", str(self.port), "-U", SYSTEM_USER,
                            "-d", self.database, "-tAc", sql)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def __exit__(self, *exc) -> None:
        if self.folder is None:
            return
        if (self.folder / "data" / "postmaster.pid").exists():
            _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
