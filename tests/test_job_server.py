"""The warm job server: a job handed over runs in a forked child with the client's streams, directory,
environment and thread budget, returns its exit status, dies with its client, and falls back to running in its
own process wherever the server cannot take it."""

from __future__ import annotations

import ast
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_modules.services import job_server

REPO = Path(__file__).resolve().parents[1]

JOB = """\
import os, sys, time
from lightning_modules.services.job_server import hand_over
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
def scripts(tmp_path_factory):
    """The folder of the job scripts the test server may run."""
    folder = tmp_path_factory.mktemp("scripts")
    (folder / "job.py").write_text(JOB)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, scripts):
    folder = tmp_path_factory.mktemp("job-server")
    process = job_server.start(folder / "server.log", wait_s=30, scripts=scripts)
    assert process is not None, (folder / "server.log").read_text()
    yield process, {**os.environ, **process.environment}  # only the jobs these tests start hand over
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
def script(scripts):
    return scripts / "job.py"


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
    another_copy = f"{sys.prefix}{os.pathsep}{tmp_path / 'project'}"  # the same Python, another lightning_modules
    for changed in ({job_server.SOCKET_VARIABLE: ""}, {job_server.SERVES_VARIABLE: "/some/conda/env"},
                    {job_server.SERVES_VARIABLE: another_copy},
                    {job_server.SOCKET_VARIABLE: str(tmp_path / "no-server.sock")}):
        result = _run(script, {**environment, **changed}, tmp_path, CODE="2")
        assert result.returncode == 2, result.stderr
        assert f"parent={process.pid} " not in result.stdout and "parent=" in result.stdout


def test_a_workflow_uses_a_live_server_its_environment_names_for_it_and_starts_its_own_otherwise(server, tmp_path,
                                                                                                   monkeypatch):
    process, environment = server
    for name in (job_server.SOCKET_VARIABLE, job_server.SERVES_VARIABLE):
        monkeypatch.setenv(name, environment[name])
    assert job_server.serving()
    monkeypatch.setenv(job_server.SERVES_VARIABLE, f"{sys.prefix}{os.pathsep}{tmp_path / 'project'}")
    assert not job_server.serving()  # a server for another copy of the project
    monkeypatch.setenv(job_server.SERVES_VARIABLE, environment[job_server.SERVES_VARIABLE])
    monkeypatch.setenv(job_server.SOCKET_VARIABLE, str(tmp_path / "gone.sock"))
    assert not job_server.serving()  # a server that is not there any more
    job_server.point_jobs_at(None)
    assert job_server.SOCKET_VARIABLE not in os.environ and job_server.SERVES_VARIABLE not in os.environ


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
        assert isinstance(first, ast.ImportFrom) and first.module == "lightning_modules.services.job_server", script.name
        assert ast.unparse(second) == "hand_over()", script.name
    assert "lightning_modules.clustering.run" in job_server.script_modules()


def test_the_server_preloads_what_the_report_templates_import(tmp_path):
    """The reports' cells run in their jobs (analysis.notebook_engine): their imports are the server's to preload."""
    import json

    modules = job_server.report_modules()
    assert {"seaborn", "matplotlib.pyplot", "pandas", "lightning_modules.clustering.summary"} <= set(modules)
    template = {"cells": [{"cell_type": "markdown", "source": ["import not_a_module\n"]},
                          {"cell_type": "code", "source": ["import os.path as p, json\n", "from .relative import x\n",
                                                           "from pathlib import Path\n"]}]}
    (tmp_path / "report.ipynb").write_text(json.dumps(template))
    assert job_server.report_modules(tmp_path) == ["json", "os.path", "pathlib"]  # code cells only, absolute only


def test_a_job_dies_with_a_killed_server_and_its_client_says_so(scripts, script, tmp_path):
    """A killed Snakemake process group takes its server down with SIGKILL: no job may run on unseen."""
    process = job_server.start(tmp_path / "server.log", wait_s=30, scripts=scripts)
    environment = {**os.environ, **process.environment}
    try:
        client, job = _start_job(script, environment, tmp_path, stderr=subprocess.PIPE, text=True)
        process.kill()
        process.wait()
        assert client.wait(timeout=10) == 1 and "job server went away" in client.stderr.read()
        _wait_gone(job, "the job outlived its server")
    finally:
        job_server.stop(process)


def test_the_server_runs_one_thread_in_a_private_folder(server):
    process, _ = server
    assert len(os.listdir(f"/proc/{process.pid}/task")) == 1  # it checked so itself after its imports
    folder = Path(process.address).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    folder.chmod(0o755)
    try:
        with pytest.raises(PermissionError, match="must be private"):
            job_server.private_folder(folder)
    finally:
        folder.chmod(0o700)


def test_only_the_workflows_job_scripts_run_in_the_server(server, scripts, tmp_path):
    process, environment = server
    stranger = tmp_path / "other.py"
    stranger.write_text(JOB)  # the same text, outside the job scripts' folder: still a job script
    copied = tmp_path / "tmpabc123.job.py"  # Snakemake's copy: its preamble, then the script
    copied.write_text("######## snakemake preamble start ########\nimport sys\n" + job_server.SNAKEMAKE_PREAMBLE_END + JOB)
    for accepted in (stranger, copied):
        result = _run(accepted, environment, tmp_path)
        assert f"parent={process.pid} " in result.stdout, result.stderr
    changed = tmp_path / "changed.py"
    changed.write_text(JOB + "print('one more line')\n")
    result = _run(changed, environment, tmp_path)
    assert result.returncode == 0 and f"parent={process.pid} " not in result.stdout  # ran in its own process
    assert "job server: " in result.stderr and "is not one of the workflow's job scripts" in result.stderr


def test_a_refusal_that_comes_before_the_client_has_sent_everything_is_read_as_a_refusal(tmp_path, monkeypatch,
                                                                                         capsys):
    """The server may answer (refuse and close) while the client is still sending: under load a client once took
    that for an unreachable server (Broken pipe). Here the server answers after the first send, every time."""
    import threading

    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    address = str(folder / "server.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(1)

    def refuse():
        connection, _ = listener.accept()
        _, fds, _, _ = socket.recv_fds(connection, 4096, 3)  # the first send: the request's start, the streams
        for fd in fds:
            os.close(fd)
        connection.sendall(b"refused for a reason of its own\n")
        connection.close()

    server = threading.Thread(target=refuse)
    server.start()
    first_send = socket.send_fds

    def send_and_let_the_server_answer(connection, buffers, fds):
        sent = first_send(connection, buffers, fds)
        server.join(timeout=30)
        return sent

    monkeypatch.setattr(job_server.socket, "send_fds", send_and_let_the_server_answer)
    monkeypatch.setenv(job_server.SOCKET_VARIABLE, address)
    monkeypatch.setenv(job_server.SERVES_VARIABLE, job_server.served_by())
    monkeypatch.setenv("PADDING", "x" * 8192)  # more to send after the first 4,096 bytes
    job_server.hand_over()  # returns: the job goes on in this process
    assert "job server: for a reason of its own; this job runs in its own process" in capsys.readouterr().err
    listener.close()


def _raw_client(address: str) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(30)
    client.connect(address)
    return client


def test_a_silent_client_does_not_hold_up_other_jobs_and_is_dropped(server, script, tmp_path):
    process, environment = server
    silent = _raw_client(process.address)
    started = time.monotonic()
    result = _run(script, environment, tmp_path)  # served while the silent client waits
    assert f"parent={process.pid} " in result.stdout and time.monotonic() - started < job_server.REQUEST_TIMEOUT_S
    assert silent.makefile("r").readline().startswith("refused no whole request within")
    silent.close()


def test_an_oversized_request_is_refused_in_one_line(server):
    process, _ = server
    client = _raw_client(process.address)
    socket.send_fds(client, [b"x" * 4096], [0, 1, 2])
    try:
        client.sendall(b"x" * job_server.MAX_MESSAGE)
    except OSError:
        pass  # the server may close before it has read everything
    assert client.makefile("r").readline() == f"refused a request over {job_server.MAX_MESSAGE} bytes\n"
    client.close()


def test_another_users_connection_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    server = job_server.JobServer(str(folder / "server.sock"))
    client = _raw_client(server.address)
    monkeypatch.setattr(job_server, "peer_uid", lambda connection: os.getuid() + 1)
    server._accept()
    assert client.makefile("r").readline() == "refused another user's process\n"
    assert not server.requests
