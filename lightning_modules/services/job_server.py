"""A warm process that local workflow jobs fork from, so that a tiny job does not pay Python's imports again.

A job of `make demo` computes for well under a second, and importing torch, Lightning, scikit-learn and MLflow
took it 2-7 s. For local runs (`job_server: true`, the default) the Snakefile starts this server once; every job
script hands its job over in its first line (`hand_over()`): the server forks a child that has all of that
imported already, gives it the job's working directory, environment, stdin/stdout/stderr and thread budget, runs
the job's script there and sends its exit status back. Each job is still its own process, with its own log,
exit status, outputs and MLflow run; when Snakemake kills a job, the client passes the signal on, and a client
that dies takes its child with it. Without a server (cluster jobs, jobs in a conda environment or of another copy
of the project, `job_server: false`, a server that failed to start) the script just goes on in its own process.
One server can serve several sweeps: a workflow whose environment already points at a live server for it uses that
one (the test session starts one for all its sweeps: its imports cost ~9 s a sweep otherwise).

Why not multiprocessing's forkserver: it serves the process that started it, and Snakemake starts every job as
a new process.

What it trusts. The server runs whatever script a client names, as the user who started it, so it takes jobs
only from that user and only the workflow's own: its socket lies in a folder only that user can open (0700,
checked), the peer's uid (SO_PEERCRED) must be the server's, and the script must be one of the workflow's job
scripts (as Snakemake writes it: its preamble, then the script's text). A request it refuses (or a client that
says nothing for REQUEST_TIMEOUT_S, or asks with more than MAX_MESSAGE bytes) gets one line saying why, and that
job runs in its own process, saying so on its stderr. Forking is safe only from a single-threaded process: the
server imports its libraries with their thread pools off (SINGLE_THREADED) and refuses to serve if any thread
is left after the imports.
"""

from __future__ import annotations

import ast
import gc
import importlib
import json
import os
import runpy
import selectors
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightning_modules.core.project import ROOT

SOCKET_VARIABLE = "CLUSTERLAB_JOB_SERVER"
# whom the server serves (served_by()): a job in another environment (a conda env) or of another copy of the
# project (another lightning_modules) must not run in this one's preloaded modules
SERVES_VARIABLE = "CLUSTERLAB_JOB_SERVER_SERVES"
# Libraries the jobs import inside their functions, on top of the modules the job scripts import (read from
# workflow/scripts). Importing them starts no thread and opens no file or device.
LIBRARIES = ("numpy", "torch", "pytorch_lightning", "pytorch_lightning.loggers", "torchmetrics", "sklearn.cluster",
             "sklearn.metrics", "sklearn.linear_model", "scipy.optimize", "faiss", "pandas", "snakemake.script",
             # MLflow with its SQLite store (SQLAlchemy, alembic: 0.5 s a job otherwise) and git for run sources
             "mlflow", "mlflow.store.tracking.sqlalchemy_store", "alembic.command", "sqlalchemy.dialects.sqlite", "git",
             "papermill", "nbconvert", "lightning_modules.analysis.notebook_engine",  # the report jobs
             "lightning_modules.clustering.nearest")  # k-means' compiled loop, loaded from numba's cache
JOB_SCRIPTS = ROOT / "workflow" / "scripts"
REPORT_TEMPLATES = ROOT / "reports"  # their cells run in the report jobs (analysis.notebook_engine)
MAX_MESSAGE = 1 << 20
REQUEST_TIMEOUT_S = 10.0  # a client that has not sent its whole request by then is dropped
# The server's own environment while it imports: no library starts a thread pool (OpenBLAS, OpenMP) or
# pyarrow's jemalloc its background thread; each job sets its own thread budget (_limit_threads)
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "JE_ARROW_MALLOC_CONF": "background_thread:false"}
SNAKEMAKE_PREAMBLE_END = "######## snakemake preamble end #########\n"  # what Snakemake puts before a job's script

_in_server = False  # set in the server, so the forked jobs run their script instead of handing it over again


def served_by() -> str:
    """What a server started from this process serves: this Python environment and this copy of the project."""
    return f"{sys.prefix}{os.pathsep}{ROOT}"


def serving() -> bool:
    """Whether this process's environment already points jobs at a server for them (one started for several
    sweeps, as the test session does): the workflow then uses it instead of starting its own."""
    address = os.environ.get(SOCKET_VARIABLE)
    return bool(address) and os.path.exists(address) and os.environ.get(SERVES_VARIABLE) == served_by()


def hand_over() -> None:
    """Run this job script in the warm job server and exit with its status; return where there is none."""
    address = os.environ.get(SOCKET_VARIABLE)
    if _in_server or not address or os.environ.get(SERVES_VARIABLE) != served_by():
        return
    script = os.path.abspath(sys.argv[0])  # the file Python runs (Snakemake sets __file__ to the original)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(address)
        request = (json.dumps({"script": script, "argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)})
                   + "\n").encode()
        sent = socket.send_fds(connection, [request[:4096]], [0, 1, 2])  # the streams go with the first bytes
        try:
            if sent < len(request):  # (a send that wrote less than the first 4096 bytes included)
                connection.sendall(request[sent:])
        except BrokenPipeError:
            pass  # the server refused before it had read everything: its answer, already sent, says why
        reply = connection.makefile("r")
        answer = reply.readline()
    except OSError as error:
        answer = f"refused unreachable ({error.strerror or error})"
    started = answer.split(maxsplit=1)
    if not started or started[0] != "pid":
        connection.close()
        reason = started[1].strip() if len(started) == 2 and started[0] == "refused" else "no answer"
        print(f"job server: {reason}; this job runs in its own process", file=sys.stderr)
        return
    child = int(started[1])

    def pass_on(signum, _frame):
        _signal_job(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, pass_on)
    finished = reply.readline().split()
    if not finished or finished[0] != "exit":
        print("error: the job server went away while running this job", file=sys.stderr)
        raise SystemExit(1)
    code = int(finished[1])
    raise SystemExit(code if code >= 0 else 128 - code)


def _signal_job(pid: int, signum: int) -> None:
    """Signal a job and whatever it started (its process group), if it is still there."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def script_modules(folder: Path = JOB_SCRIPTS) -> list[str]:
    """The project modules the workflow's job scripts import."""
    modules = set()
    for script in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lightning_modules"):
                modules.add(node.module)
    return sorted(modules)


def report_modules(folder: Path = REPORT_TEMPLATES) -> list[str]:
    """Every module the report templates' code cells import (pandas, seaborn, the project's summaries, ...)."""
    modules = set()
    for template in sorted(folder.glob("*.ipynb")):
        for cell in json.loads(template.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            for node in ast.walk(ast.parse("".join(cell["source"]))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module)
    return sorted(modules)


def _limit_threads(environment: dict) -> None:
    """The job's thread budget (Snakemake's OMP_NUM_THREADS), also for libraries that read it at import."""
    threads = environment.get("OMP_NUM_THREADS", "")
    if not threads.isdigit():
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


def _die_with(parent: int) -> None:
    """Linux: this child gets SIGKILL when the server dies, also when the server is killed outright (a killed
    Snakemake process group), so no job outlives the run that started it."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the server died before prctl took effect
        os._exit(1)


def _run_job(request: dict, fds: list[int], server_pid: int) -> None:
    """In the forked child: become the job's process and run its script; never returns."""
    code = 1
    try:
        _die_with(server_pid)
        os.setpgid(0, 0)  # the job and what it starts can be signalled together
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(SOCKET_VARIABLE, None)  # what the job starts runs on its own, never handed back here
        sys.argv = request["argv"]
        _limit_threads(request["env"])
        runpy.run_path(request["script"], run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the job's own failure, shown where its stderr goes
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream must not change the exit status
                pass
        os._exit(code)


def private_folder(folder: str | os.PathLike) -> None:
    """The socket's folder is the server's first barrier: it must be this user's and closed to everyone else."""
    status = os.stat(folder)
    if status.st_uid != os.getuid() or stat.S_IMODE(status.st_mode) & 0o077:
        raise PermissionError(f"job server folder {folder} must be private to its user (mode 0700, uid "
                              f"{os.getuid()}), it is mode {stat.S_IMODE(status.st_mode):o}, uid {status.st_uid}")


def os_threads() -> list[str]:
    """The names of this process's threads, as the kernel sees them (libraries' C threads included)."""
    tasks = Path("/proc/self/task")
    return sorted((task / "comm").read_text().strip() for task in tasks.iterdir())


def job_script(path: str, scripts: Path = JOB_SCRIPTS) -> bool:
    """Whether `path` runs one of the workflow's job scripts: the script itself, or Snakemake's copy of it (its
    preamble, then the script's text)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return False
    body = text.split(SNAKEMAKE_PREAMBLE_END, 1)[-1]
    return any(body == script.read_text() for script in scripts.glob("*.py"))


def peer_uid(connection: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                struct.calcsize("3i")))
    return uid


class JobServer:
    """Accepts jobs on a Unix socket and runs each in a forked child; single-threaded, so forking is safe."""

    def __init__(self, address: str, scripts: Path = JOB_SCRIPTS):
        private_folder(os.path.dirname(address) or ".")
        self.address = address
        self.scripts = Path(scripts)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(address)  # before the imports: jobs queue in the backlog meanwhile
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.jobs: dict[int, tuple[socket.socket, int]] = {}  # pidfd -> (client connection, pid)
        self.requests: dict[socket.socket, dict] = {}  # connections still sending: deadline, bytes, fds
        self.parent = os.getppid()
        self.pid = os.getpid()

    def preload(self) -> list[str]:
        modules = [*LIBRARIES, *script_modules(), *report_modules()]
        for module in modules:
            importlib.import_module(module)
        import torch

        if torch.cuda.is_initialized():  # a forked child could not use CUDA then
            raise RuntimeError("a preloaded module initialised CUDA; the job server cannot fork jobs")
        threads = os_threads()
        if len(threads) > 1:
            raise RuntimeError(f"the job server runs {len(threads)} threads after its imports ({', '.join(threads)}); "
                               "forking it would be unsafe")
        # The preloaded objects leave the garbage collector's generations (Python's advice for fork without exec):
        # a job's full collection would otherwise walk them all and copy every page they lie on (~860k objects:
        # 0.55 s and 225 MB of copy-on-write faults per collection, measured in a forked child)
        gc.freeze()
        return modules

    def serve(self) -> None:
        global _in_server
        _in_server = True
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        while os.getppid() == self.parent:  # Snakemake gone (killed): stop with it
            for key, _ in self.selector.select(timeout=1.0):
                kind = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "request":
                    self._read(key.fileobj)
                elif kind == "exit":
                    self._finished(key.fileobj)
                else:
                    self._client_gone(kind)
            now = time.monotonic()
            for connection in [c for c, request in self.requests.items() if request["deadline"] < now]:
                self._refuse(connection, f"no whole request within {REQUEST_TIMEOUT_S:.0f} s")
        self.stop()

    def _accept(self) -> None:
        """A new client: read its request as it comes (_read), never waiting on it here."""
        connection, _ = self.listener.accept()
        if peer_uid(connection) != os.getuid():
            self._refuse(connection, "another user's process", pending=False)
            return
        connection.setblocking(False)
        self.requests[connection] = {"deadline": time.monotonic() + REQUEST_TIMEOUT_S, "data": b"", "fds": []}
        self.selector.register(connection, selectors.EVENT_READ, "request")

    def _refuse(self, connection: socket.socket, reason: str, pending: bool = True) -> None:
        if pending:
            request = self.requests.pop(connection)
            self.selector.unregister(connection)
            for fd in request["fds"]:
                os.close(fd)
        print(f"refused a job: {reason}", flush=True)
        try:
            connection.setblocking(True)
            connection.settimeout(1.0)
            connection.sendall(f"refused {reason}\n".encode())
        except OSError:
            pass
        connection.close()

    def _read(self, connection: socket.socket) -> None:
        """More of a request: a line of JSON (the first bytes with the client's three streams)."""
        request = self.requests[connection]
        try:
            data, fds, _, _ = socket.recv_fds(connection, MAX_MESSAGE + 1, 3)
        except BlockingIOError:
            return
        except OSError as error:
            data, fds = b"", []
            reason = f"reading the request failed ({error})"
        else:
            reason = "the client closed before its request was whole"
        request["fds"] += fds
        request["data"] += data
        if len(request["data"]) > MAX_MESSAGE:
            self._refuse(connection, f"a request over {MAX_MESSAGE} bytes")
        elif not data:
            self._refuse(connection, reason)
        elif request["data"].endswith(b"\n"):
            self._start(connection)

    def _start(self, connection: socket.socket) -> None:
        """A whole request: fork its job, or refuse it."""
        received = self.requests[connection]
        try:
            request = json.loads(received["data"])
        except ValueError:
            self._refuse(connection, "a request that is not JSON")
            return
        if len(received["fds"]) != 3:
            self._refuse(connection, "a request without the job's three streams")
            return
        if not job_script(request.get("script", ""), self.scripts):
            self._refuse(connection, f"{request.get('script')} is not one of the workflow's job scripts")
            return
        self.requests.pop(connection)
        self.selector.unregister(connection)
        connection.setblocking(True)
        fds = received["fds"]
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            self.listener.close()
            connection.close()
            for other, pending in self.requests.items():  # other clients' half-read requests are not this job's
                other.close()
                for fd in pending["fds"]:
                    os.close(fd)
            _run_job(request, fds, self.pid)
        try:  # also here, so no signal reaches a child that has not yet made its own group
            os.setpgid(pid, pid)
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.jobs[pidfd] = (connection, pid)
        self.selector.register(pidfd, selectors.EVENT_READ, "exit")
        self.selector.register(connection, selectors.EVENT_READ, pidfd)
        connection.sendall(f"pid {pid}\n".encode())

    def _finished(self, pidfd: int) -> None:
        connection, pid = self.jobs.pop(pidfd)
        _, status = os.waitpid(pid, 0)
        self.selector.unregister(pidfd)
        if connection.fileno() in self.selector.get_map():
            self.selector.unregister(connection)
        os.close(pidfd)
        try:
            connection.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
        except OSError:
            pass
        connection.close()

    def _client_gone(self, pidfd: int) -> None:
        """The client's connection closed (Snakemake killed the job): kill its child; `_finished` reaps it."""
        connection, pid = self.jobs[pidfd]
        _signal_job(pid, signal.SIGKILL)
        self.selector.unregister(connection)

    def stop(self, *_args) -> None:
        for _, pid in self.jobs.values():
            _signal_job(pid, signal.SIGKILL)
        Path(self.address).unlink(missing_ok=True)
        raise SystemExit(0)


def start(log_path: str | os.PathLike, wait_s: float = 10.0, scripts: Path = JOB_SCRIPTS) -> subprocess.Popen | None:
    """Start a server for the jobs of this process; None where it could not start (the jobs then run on their
    own). It runs the job scripts in `scripts`. Jobs hand over to it where their environment has the server's
    `environment` (the Snakefile exports it to the jobs it starts)."""
    folder = tempfile.mkdtemp(prefix="clusterlab-jobs-")  # mode 0700: the server checks it
    address = os.path.join(folder, "server.sock")
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "lightning_modules.services.job_server", address, str(scripts)],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  env={**os.environ, **SINGLE_THREADED})
    server.address = address
    server.environment = {SOCKET_VARIABLE: address, SERVES_VARIABLE: served_by()}
    deadline = time.monotonic() + wait_s
    while not os.path.exists(address):
        if server.poll() is not None or time.monotonic() > deadline:
            stop(server)
            return None
        time.sleep(0.05)
    return server


def point_jobs_at(server: subprocess.Popen | None) -> None:
    """The jobs this process starts from now on hand over to `server` (they inherit its environment); with None,
    to no server."""
    if server is None:
        for name in (SOCKET_VARIABLE, SERVES_VARIABLE):
            os.environ.pop(name, None)
    else:
        os.environ.update(server.environment)


def stop(server: subprocess.Popen | None) -> None:
    if server is None:
        return
    if os.environ.get(SOCKET_VARIABLE) == server.address:
        del os.environ[SOCKET_VARIABLE]
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
    shutil.rmtree(os.path.dirname(server.address), ignore_errors=True)


def main() -> None:
    server = JobServer(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else JOB_SCRIPTS)
    signal.signal(signal.SIGTERM, server.stop)
    started = time.perf_counter()
    modules = server.preload()
    print(f"job server on {server.address}: {len(modules)} modules preloaded in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    server.serve()


if __name__ == "__main__":
    # run the package's module, not this `__main__` copy: the jobs import it and must see `_in_server`
    from lightning_modules.services.job_server import main as serve_jobs

    serve_jobs()
