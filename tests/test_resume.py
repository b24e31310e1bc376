"""Kill a running sweep (SIGKILL to Snakemake and its jobs while a head is training), rerun it, and get the
tables an uninterrupted run gets."""

import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import yaml

from conftest import run_workflow, snakemake_command

CONFIG = {
    "sweep": "resume",
    "datasets": {"digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "knn": {"k": 10},
    "clustering": {"k": [5], "seeds": [0], "methods": {
        "kmeans": {"n_init": 2, "max_iter": 20},
        "temi": {"epochs": 60, "batch_size": 16, "n_heads": 2, "hidden_dim": 16, "bottleneck_dim": 8,
                 "progress": False}}},
}
RUN = "results/digits/pixels/clusters/temi/k5/seed0"


def run_to_the_end(workdir):
    result = run_workflow(workdir)
    assert result.returncode == 0, result.stderr[-3000:]


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["seconds"])


def test_killed_sweep_resumes_to_the_tables_of_an_uninterrupted_one(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for workdir in (reference, killed):
        workdir.mkdir()
        (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    run_to_the_end(reference)

    process = subprocess.Popen(snakemake_command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    checkpoint = killed / RUN / ".checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and every job it started
    process.wait()
    assert checkpoint.exists(), "the head finished (or never started) before it could be killed"
    assert not (killed / RUN / "metrics.json").exists()

    assert run_workflow(killed, "--unlock", timeout=120).returncode == 0
    run_to_the_end(killed)
    assert "resuming from" in (killed / "results/logs/cluster/digits/pixels/clusters/temi/k5/seed0.log").read_text()
    assert not (killed / RUN / ".checkpoints").exists()  # removed once the run's artifacts are written
    table = pd.read_parquet(killed / "results/tables/clustering.parquet")
    pd.testing.assert_frame_equal(comparable(table), comparable(pd.read_parquet(reference / "results/tables/clustering.parquet")))
    np.testing.assert_array_equal(np.load(killed / RUN / "assignments.npy"), np.load(reference / RUN / "assignments.npy"))
