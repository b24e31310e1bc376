"""A slice of the demo sweep through the real slurm profile, on a one-node SLURM cluster started on this
machine, logging to an MLflow server started with `make mlflow-server`. The node declares one GPU (a `gpu` GRES
without a device behind it), and the sweep asks for GPUs as a lab's would: the GPU jobs' requests reach SLURM and
are granted; the code still runs on the CPU. Run by `make test-slurm`; skipped, with the reason, where SLURM
cannot be installed (no root, no package mirror), and failed so under CI."""

import os
import re
import subprocess
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import REPO, SMALL_HEAD, SNAKEMAKE, finished_sweep, serving
from debian import unavailable
from lightning_modules.services import tracking_server
from lightning_modules.services.tracking import result_runs
from slurm_cluster import SingleNodeSlurm, SlurmUnavailable, free_port

pytestmark = pytest.mark.slurm

SLICE = {
    "sweep": "slurm-slice",
    "datasets": {"digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "knn": {"k": 10},
    "clustering": {"k": [5, 10], "seeds": [0], "methods": {
        "kmeans": {"n_init": 2, "max_iter": 20},
        "temi": {"k": [10], **SMALL_HEAD}},
        # the bound's TEMI run is a GPU job too; its K grid stays the slice's
        "upper_bound": {"enabled": True, "k": 20, "truncate_k": False, "temi": SMALL_HEAD}},
}
RUNS = {("kmeans", "5"), ("kmeans", "10"), ("temi", "10")}
# the slice's jobs that ask for a GPU (workflow/profiles/slurm: embed and the heads; k-means is a small CPU job)
GPU_RULES = {"embed", "cluster", "upper_cluster_bound"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        with SingleNodeSlurm(tmp_path_factory.mktemp("slurm"), gpus=1) as running:
            yield running
    except SlurmUnavailable as reason:
        unavailable(f"SLURM unavailable: {reason}")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`make mlflow-server` (authentication on) on a free port of 127.0.0.1, stopped (with its workers) afterwards:
    its URI and the owner-only credentials file jobs read."""
    results, port = tmp_path_factory.mktemp("tracking"), free_port()
    command = ["make", "-C", str(REPO), "mlflow-server", f"RESULTS={results}", f"MLFLOW_PORT={port}"]
    with serving(command, port) as (uri, _):
        yield SimpleNamespace(uri=uri, credentials=results / tracking_server.AUTH_DIR / "credentials")


@pytest.fixture(scope="module")
def slurm_sweep(cluster, mlflow_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    (workdir / "config.yaml").write_text(yaml.safe_dump(SLICE))
    site = {  # what a user sets for their cluster: a GPU per GPU job
        "CLUSTERLAB_SLURM_PARTITION": cluster.partition, "CLUSTERLAB_GPUS_PER_JOB": "1",
        "CLUSTERLAB_TRACKING_URI": mlflow_server.uri, "CLUSTERLAB_SLURM_STATUS_COMMAND": "squeue",
        tracking_server.CREDENTIALS_ENV: str(mlflow_server.credentials),  # SLURM jobs inherit it
        "CLUSTERLAB_SLURM_STATUS_DELAY": "2",
    }
    command = ["timeout", "-s", "KILL", "900", SNAKEMAKE, "-s", str(REPO / "Snakefile"),
               "--profile", str(REPO / "workflow" / "profiles" / "slurm"), "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml"), "--slurm-keep-successful-logs"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **site}, timeout=960)
    (workdir / "snakemake.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return workdir


def test_jobs_went_through_slurm(slurm_sweep):
    log = (slurm_sweep / "snakemake.log").read_text()
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    # embed, knn_graph, init_tracking, the TEMI run, the upper cluster bound, the two k-means runs as one allocation
    # (the small-cpu group), the label-free selection, the 2-D map and the selected run's figures (each reads the
    # embeddings: CPU-node jobs at scale); tables and the report run locally
    assert len(submitted) == 9 and len(set(submitted)) == 9
    slurm_logs = {path.stem for path in (slurm_sweep / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert set(submitted) <= slurm_logs


def gpus_of(job_id: str) -> tuple[int, int]:
    """(asked for, granted): a job's GPUs as `scontrol -d show job` lists them (`TresPerJob` / `TresPerNode` =
    gres:gpu:N, `JOB_GRES=gpu:N`); finished jobs stay listed for the cluster's MinJobAge."""
    shown = subprocess.run(["scontrol", "-d", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    asked = re.findall(r"TresPer(?:Job|Node)=\S*gres:gpu:(\d+)", shown.stdout)
    granted = re.findall(r"JOB_GRES=\S*gpu:(\d+)", shown.stdout)
    return sum(map(int, asked)), sum(map(int, granted))


def test_gpu_jobs_asked_for_and_got_a_gpu_and_cpu_jobs_none(slurm_sweep):
    folder = slurm_sweep / ".snakemake" / "slurm_logs"
    jobs = {path.stem: path.relative_to(folder).parts[0].removeprefix("rule_") for path in folder.rglob("*.log")}
    gpus = {job: (rule, *gpus_of(job)) for job, rule in jobs.items()}
    assert {rule for rule, asked, granted in gpus.values() if asked or granted} == GPU_RULES, gpus
    assert all(asked == granted == 1 for rule, asked, granted in gpus.values() if rule in GPU_RULES), gpus
    # the TEMI run's job, not the k-means runs' allocation (the small-cpu group)
    assert sorted(rule for rule, _, _ in gpus.values() if rule in GPU_RULES) == sorted(GPU_RULES), gpus


def test_small_jobs_ran_together_in_one_allocation(slurm_sweep):
    grouped = list((slurm_sweep / ".snakemake" / "slurm_logs").glob("group_small-cpu*/**/*.log"))
    assert len(grouped) == 1, grouped
    text = grouped[0].read_text()
    assert "2 of 2 steps (100%) done" in text, text[-3000:]  # the allocation's own Snakemake ran both runs
    assert "method=kmeans, k=5, seed=0" in text and "method=kmeans, k=10, seed=0" in text


def test_tables_equal_those_of_a_local_run(slurm_sweep, tmp_path):
    local = finished_sweep(tmp_path, SLICE)
    on_slurm = pd.read_parquet(slurm_sweep / "results" / "tables" / "clustering.parquet").drop(columns="seconds")
    locally = pd.read_parquet(local / "results" / "tables" / "clustering.parquet").drop(columns="seconds")
    pd.testing.assert_frame_equal(on_slurm, locally)


def test_every_run_reached_the_mlflow_server(slurm_sweep, mlflow_server, monkeypatch):
    for name, value in tracking_server.read_credentials(mlflow_server.credentials).items():
        monkeypatch.setenv(name, value)  # the server refuses requests without them
    client = MlflowClient(mlflow_server.uri)
    runs = [run for run in result_runs(client, client.get_experiment_by_name("slurm-slice").experiment_id)
            if "method" in run.data.tags]  # the clustering runs (not the bound's)
    assert {(r.data.tags["method"], r.data.tags["k"]) for r in runs} == RUNS
    assert all(r.info.status == "FINISHED" and "acc" in r.data.metrics for r in runs)
    assert not (slurm_sweep / "results" / "mlflow.db").exists()  # nothing went to a SQLite file instead
