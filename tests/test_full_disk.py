"""A full disk for real: the results folder on a small tmpfs. The sweep stops with one line that names the path
and says the disk is full; once space is freed the same command finishes with exactly the tables of an
undisturbed run (nothing half-written is taken for done: checkpoints, artifacts, tables)."""

import errno
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import SMALL_HEAD, finished_sweep, run_workflow
from debian import require_root, unavailable
from lightning_modules.core.io import save_npy, save_torch
from lightning_modules.core.jobs import error_line

CONFIG = {
    "sweep": "full-disk",
    "datasets": {"digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "knn": {"k": 10},
    "clustering": {"k": [10], "seeds": [0, 1],
                   "methods": {"kmeans": {"n_init": 2, "max_iter": 20}, "temi": {**SMALL_HEAD, "epochs": 3}}},
}
TIMES = ["seconds"]  # wall-clock columns: the only ones allowed to differ


def mount_tmpfs(folder, size: str):
    require_root("mounting a small tmpfs")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        unavailable(f"cannot mount a tmpfs here ({getattr(error, 'stderr', '') or error})")


def test_a_full_disk_is_one_line_and_the_rerun_finishes_as_an_undisturbed_run(tmp_path):
    require_root("mounting a small tmpfs")
    (tmp_path / "reference").mkdir()
    reference = finished_sweep(tmp_path / "reference", CONFIG)
    work = tmp_path / "full"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    results = work / "results"
    mount_tmpfs(results, "600k")
    try:
        failed = run_workflow(work)
        assert failed.returncode != 0
        errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
        assert errors and all("error: the disk is full writing results/" in line for line in errors), \
            failed.stderr[-3000:]
        assert not list(results.rglob("last.ckpt"))  # no checkpoint that looks complete was left
        subprocess.run(["mount", "-o", "remount,size=64m", str(results)], check=True)
        again = run_workflow(work)
        assert again.returncode == 0, again.stderr[-3000:]
        for table in ("clustering", "selection"):
            expected = pd.read_parquet(reference / "results" / "tables" / f"{table}.parquet")
            got = pd.read_parquet(results / "tables" / f"{table}.parquet")
            pd.testing.assert_frame_equal(got.drop(columns=TIMES, errors="ignore"),
                                          expected.drop(columns=TIMES, errors="ignore"))
    finally:
        subprocess.run(["umount", "-l", str(results)], capture_output=True)


@pytest.mark.parametrize("name, save", [("rows.npy", save_npy), ("model.pt", save_torch)])
def test_an_artifact_that_does_not_fit_is_a_full_disk_naming_its_path(tmp_path, name, save):
    # numpy's own error for the short write carries no errno ("N requested and M written"), torch's zip writer
    # raises a RuntimeError ("unexpected pos")
    folder = tmp_path / "small"
    mount_tmpfs(folder, "64k")
    try:
        with pytest.raises(OSError) as raised:
            save(folder / name, np.zeros((1000, 64), dtype=np.float32) if name.endswith(".npy")
                 else torch.zeros(1000, 64))
        assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(folder / name)
        assert error_line(raised.value) == (f"the disk is full writing {folder / name} (no space left on "
                                            "device): free space, then run the same command again")
        assert list(folder.iterdir()) == []  # the partial temporary file is gone
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
