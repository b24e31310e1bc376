"""The warm job server: a job handed over runs in a forked child with the client's streams, directory,
environment and thread budget, returns its exit status, dies with its client, and falls back to running in its
own process wherever the server cannot take it."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_modules import job_server

REPO = Path(__file__).resolve().parents[1]

JOB = """\
import os, sys, time
from lightning_modules.job_server import hand_over
hand_over()
import torch
print(f"parent={os.getppid()} threads={torch.get_num_threads()} cwd={os.getcwd()} colour={os.environ.get('COLOUR')}")
print("to stderr", file=sys.stderr)
if os.environ.get("PID_FILE"):
    open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
    time.sleep(60)
raise SystemExit(int(os.environ.get("CODE", "0")))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("job-server")
    process = job_server.start(folder / "server.log", wait_s=30)
    assert process is not None, (folder / "server.log").read_text()
    environment = dict(os.environ)
    for name in (job_server.SOCKET_VARIABLE, job_server.PREFIX_VARIABLE):
        os.environ.pop(name)  # only the jobs these tests start hand over; pytest's own subprocesses don't
    yield process, environment
    job_server.stop(process)
    assert not Path(process.address).parent.exists()


def _run(script: Path, environment: dict, cwd: Path, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script)], env={**environment, **extra}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _start_job(script: Path, environment: dict, cwd: Path, **popen) -> tuple[subprocess.Popen, int]:
    """A client running the sleeping job, and the job's own pid once it runs."""
    pid_file = cwd / "job.pid"
    client = subprocess.Popen([sys.executable, str(script)], env={**environment, "PID_FILE": str(pid_file)},
                              cwd=cwd, stdout=subprocess.DEVNULL, **popen)
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and client.poll() is None
        time.sleep(0.1)
    return client, int(pid_file.read_text())


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has exited
    except OSError:
        return False


def _wait_gone(pid: int, what: str) -> None:
    deadline = time.monotonic() + 10
    while _running(pid):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "job.py"
    path.write_text(JOB)
    return path


def test_a_handed_over_job_runs_in_the_server_with_the_clients_streams_directory_and_environment(server, script,
                                                                                                 tmp_path):
    process, environment = server
    result = _run(script, environment, tmp_path, COLOUR="red", OMP_NUM_THREADS="1", CODE="3")
    assert result.returncode == 3
    assert f"parent={process.pid} " in result.stdout  # forked by the server
    assert "threads=1 " in result.stdout and f"cwd={tmp_path} " in result.stdout and "colour=red" in result.stdout
    assert result.stderr.strip() == "to stderr"
    again = _run(script, environment, tmp_path, COLOUR="blue", OMP_NUM_THREADS="2")
    assert again.returncode == 0 and "threads=2 " in again.stdout and "colour=blue" in again.stdout


def test_without_a_server_or_in_another_environment_the_job_runs_in_its_own_process(server, script, tmp_path):
    process, environment = server
    for changed in ({job_server.SOCKET_VARIABLE: ""}, {job_server.PREFIX_VARIABLE: "/some/conda/env"},
                    {job_server.SOCKET_VARIABLE: str(tmp_path / "no-server.sock")}):
        result = _run(script, {**environment, **changed}, tmp_path, CODE="2")
        assert result.returncode == 2, result.stderr
        assert f"parent={process.pid} " not in result.stdout and "parent=" in result.stdout


def test_a_killed_client_takes_its_job_with_it(server, script, tmp_path):
    _, environment = server
    client, job = _start_job(script, environment, tmp_path, stderr=subprocess.DEVNULL)
    client.kill()
    client.wait()
    _wait_gone(job, "the job outlived its client")


def test_a_signal_to_the_client_is_passed_on_to_the_job(server, script, tmp_path):
    _, environment = server
    client, _ = _start_job(script, environment, tmp_path, stderr=subprocess.DEVNULL)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=10) == 128 + signal.SIGTERM


def test_every_workflow_script_hands_its_job_over_before_importing_anything_else():
    for script in sorted((REPO / "workflow" / "scripts").glob("*.py")):
        body = ast.parse(script.read_text()).body
        first, second = body[0], body[1]
        assert isinstance(first, ast.ImportFrom) and first.module == "lightning_modules.job_server", script.name
        assert ast.unparse(second) == "hand_over()", script.name
    assert "lightning_modules.clustering.run" in job_server.script_modules()


def test_a_job_dies_with_a_killed_server_and_its_client_says_so(script, tmp_path):
    """A killed Snakemake process group takes its server down with SIGKILL: no job may run on unseen."""
    process = job_server.start(tmp_path / "server.log", wait_s=30)
    environment = dict(os.environ)
    for name in (job_server.SOCKET_VARIABLE, job_server.PREFIX_VARIABLE):
        os.environ.pop(name)
    try:
        client, job = _start_job(script, environment, tmp_path, stderr=subprocess.PIPE, text=True)
        process.kill()
        process.wait()
        assert client.wait(timeout=10) == 1 and "job server went away" in client.stderr.read()
        _wait_gone(job, "the job outlived its server")
    finally:
        job_server.stop(process)
