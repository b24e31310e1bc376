"""`python -c CODE ARGS`, run in a process forked from one that has imported the libraries the tests' processes
import.

A fresh interpreter spends seconds on imports before it does anything: ~2 s for a `snakemake` command (its CLI,
its plugins, pandas for the SLURM plugin, jsonschema, the Snakefile's modules), ~3 s for a process that logs to
MLflow; the tests start about a hundred such processes. `Fork` (and `run`, which waits for it) runs the code in a
new process that multiprocessing's forkserver forks from a process that imported PRELOAD once per test process
(`SNAKEMAKE` is what the `snakemake` script runs): each still has its own process (and process group), arguments,
environment, working folder, streams and exit status, and nothing one does is left for the next. The command-line
scripts themselves are still run by the tests of the tutorials, the demo, SLURM and the project copies (whose jobs
import another copy of the code).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from multiprocessing import forkserver

from lightning_modules.services.job_server import SINGLE_THREADED  # the forkserver imports PRELOAD with no thread left

PRELOAD = ["snakemake.cli", "snakemake.api", "snakemake.report.html_reporter", "snakemake_logger_plugin_rich.handler",
           "snakemake_executor_plugin_slurm", "smart_open", "jsonschema", "rich.console", "yte",
           "lightning_modules.workflow.config", "lightning_modules.workflow.files",
           "lightning_modules.analysis.published", "mlflow", "mlflow.store.tracking.sqlalchemy_store", "alembic.command", "sqlalchemy.dialects.sqlite",
           "lightning_modules.services.tracking"]
SNAKEMAKE = "import sys; from snakemake.cli import main; sys.exit(main())"

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


class Fork:
    """`python -c code *args` in `environment` and folder `cwd` (default: the current one), started in a fork
    (the part of subprocess.Popen the tests use)."""

    def __init__(self, code: str, args: list[str], environment: dict | None = None, cwd=None):
        self.args = ["python", "-c", code, *args]
        self._folder = tempfile.TemporaryDirectory(prefix="fork-")
        self._streams = [os.path.join(self._folder.name, name) for name in ("stdout", "stderr")]
        for path in self._streams:
            open(path, "w").close()
        _start_forkserver()
        self._process = _context.Process(target=_python, args=(code, args, dict(environment or os.environ),
                                                               str(cwd or os.getcwd()), *self._streams))
        self._process.start()

    def wait(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Its exit status and output, as `subprocess.run(..., capture_output=True, text=True)` gives them;
        past `timeout` it is killed with the processes it started and TimeoutExpired raised."""
        self._process.join(timeout)
        timed_out = self._process.exitcode is None
        if timed_out:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.join()
        try:
            output = [open(path, errors="replace").read() for path in self._streams]
        finally:
            self._folder.cleanup()
        if timed_out:
            raise subprocess.TimeoutExpired(self.args, timeout, *output)
        return subprocess.CompletedProcess(self.args, self._process.exitcode, *output)


def run(code: str, args: list[str], environment: dict | None = None, timeout: float | None = None, cwd=None):
    return Fork(code, args, environment, cwd).wait(timeout)


def _python(code: str, args: list[str], environment: dict, cwd: str, stdout: str, stderr: str) -> None:
    os.setsid()  # a timeout kills it together with the processes it started
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(cwd)
    for fd, path in ((1, stdout), (2, stderr)):
        stream = os.open(path, os.O_WRONLY)
        os.dup2(stream, fd)
        os.close(stream)
    sys.argv = ["-c", *args]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})  # SystemExit's status becomes the process's


def _start_forkserver() -> None:
    saved = {name: os.environ.get(name) for name in SINGLE_THREADED}
    os.environ.update(SINGLE_THREADED)
    try:
        forkserver.ensure_running()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
