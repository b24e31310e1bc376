import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

# `make test` runs two pytest-xdist workers on two cores: each computes with its share of them. Left at one thread
# per core each, torch's and OpenBLAS's pools spin against each other (a TURTLE test took 34 s instead of 4). Set
# before numpy and torch are imported: they size their pools then.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import numpy as np  # noqa: E402 - after the thread budget above
import pytest  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))  # the one installed beside this Python
# a clustering head small enough for end-to-end tests on digits
SMALL_HEAD = {"epochs": 2, "batch_size": 64, "n_heads": 2, "hidden_dim": 16, "bottleneck_dim": 8, "progress": False}


@pytest.fixture(scope="session")
def digits_pixels():
    """Digits as the `pixels` backbone embeds them: (1797, 64) in [0, 1], and the labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


def snakemake_command(workdir, *extra) -> list[str]:
    """The real Snakefile with the local profile, run in `workdir` on its `config.yaml`."""
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "workflow" / "profiles" / "local"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2", *extra]


def project_copy(folder: Path) -> Path:
    """A copy of the project's code, Snakefile and configs in `folder`/project (no results, no caches)."""
    import shutil

    copy = folder / "project"
    copy.mkdir()
    for name in ("Snakefile", "workflow", "lightning_modules", "config", "reports", "envs", "benchmarks"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, copy / name)
    return copy


def code_blocks(page: Path) -> list[tuple[str, str, str]]:
    """(language, title, text) of every fenced code block of a Markdown page, in order (`title="..."` as Material
    writes a file name on a block)."""
    import re

    return [(match.group(1), match.group(2) or "", match.group(3))
            for match in re.finditer(r'^```(\w+)(?: title="([^"]+)")?\n(.*?)^```$', page.read_text(),
                                     flags=re.MULTILINE | re.DOTALL)]


def run_copy(copy: Path, workdir: Path, config: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the workflow of a project copy in `workdir` on `config`, its jobs importing the copy's code."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = snakemake_command(workdir)
    command[command.index("-s") + 1] = str(copy / "Snakefile")
    environment = {**os.environ, "PYTHONPATH": str(copy)}  # the copy's lightning_modules, before the installed one
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


# The slowest test files (`make test`'s --durations, 2026-12), longest first. pytest-xdist hands whole files to
# its workers in collection order: started first, the long ones no longer leave one worker running alone at the end.
SLOWEST_FILES = ("test_layout.py", "test_workflow.py", "test_bad_inputs.py", "test_tutorials.py", "test_workflow_ood.py",
                 "test_job_server.py", "test_resume.py", "test_full_disk.py", "test_claims.py",
                 "test_postgres_tracking.py", "test_plugins.py", "test_turtle.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: place for place, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


_SWEEPS_JOB_SERVER = {}


def sweep_environment() -> dict:
    """The environment the tests' sweeps run in: one warm job server for all of them, started by the first (its
    imports take ~9 s, paid once a session instead of once a sweep). Sweeps of a project copy start their own."""
    from lightning_modules.services import job_server

    if "process" not in _SWEEPS_JOB_SERVER:
        _SWEEPS_JOB_SERVER["log"] = Path(tempfile.mkdtemp(prefix="clusterlab-test-jobs-")) / "job_server.log"
        _SWEEPS_JOB_SERVER["process"] = job_server.start(_SWEEPS_JOB_SERVER["log"])
    process = _SWEEPS_JOB_SERVER["process"]
    return {**os.environ, **(process.environment if process is not None else {})}


def sweep_job_server_log() -> Path:
    return _SWEEPS_JOB_SERVER["log"]


def pytest_sessionfinish(session, exitstatus):
    import shutil

    from lightning_modules.services import job_server

    job_server.stop(_SWEEPS_JOB_SERVER.pop("process", None))
    if "log" in _SWEEPS_JOB_SERVER:
        shutil.rmtree(_SWEEPS_JOB_SERVER.pop("log").parent, ignore_errors=True)


def run_workflow(workdir, *extra, timeout: int = 600) -> subprocess.CompletedProcess:
    """`snakemake_command`, run in a fork of a process that has imported Snakemake (tests/forks.py)."""
    import forks

    return forks.run(forks.SNAKEMAKE, snakemake_command(workdir, *extra)[1:], sweep_environment(), timeout)


def finished_sweep(workdir, config: dict):
    """Write `config` into `workdir`, run the workflow to the end there (it must succeed), return `workdir`."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_workflow(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def gaussian_blobs(n_per: int = 100, centres: int = 4, dims: int = 5, spread: float = 6.0, seed: int = 0):
    """Well-separated Gaussian clusters (float32 points, int labels): a clustering with a known answer."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dims)) * spread
    labels = np.repeat(np.arange(centres), n_per)
    return (means[labels] + rng.normal(size=(len(labels), dims))).astype(np.float32), labels


@contextmanager
def serving(command: list[str], port: int, seconds: float = 120):
    """Start a tracking server `command` (in its own session) on 127.0.0.1:`port`, wait until /health answers,
    yield (its URI, the process); afterwards stop it and its workers."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(command[:4])} did not start") from None
                time.sleep(0.5)
        yield uri, process
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:  # the test killed the server itself (a restart under load)
            process.wait()
