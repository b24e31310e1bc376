"""Checkpoints that cannot poison a rerun: written atomically (a failed write leaves the previous checkpoint or
none, never a file that looks complete), verified before a run resumes (it loads and belongs to this run), moved
aside with one warning when it does not; and error lines that never come out empty."""

import errno
import logging

import numpy as np
import pytest

from lightning_modules.core.jobs import error_line
from lightning_modules.ood.probe import train_probe
from lightning_modules.ood.probe.module import LinearProbe

KWARGS = {"epochs": 3, "batch_size": 16, "seed": 3, "feature_norm": "l2"}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((60, 6)).astype(np.float32), rng.integers(0, 3, 60)


@pytest.fixture(scope="module")
def uninterrupted(data):
    return train_probe(*data, **KWARGS)


def crash_after_first_epoch(monkeypatch, tmp_path, data, **kwargs):
    """Leave a real checkpoint behind: the probe's training killed at the end of its second epoch."""
    def crash(self):
        if self.current_epoch == 1:
            raise RuntimeError("killed")

    monkeypatch.setattr(LinearProbe, "on_train_epoch_end", crash, raising=False)
    with pytest.raises(RuntimeError, match="killed"):
        train_probe(*data, checkpoint_dir=tmp_path, **{**KWARGS, **kwargs})
    monkeypatch.undo()
    assert (tmp_path / "last.ckpt").exists()


def assert_moved_aside_and_trained_from_scratch(tmp_path, data, uninterrupted, caplog, reason):
    with caplog.at_level(logging.WARNING, logger="lightning_modules.core.training"):
        resumed = train_probe(*data, checkpoint_dir=tmp_path, **KWARGS)
    np.testing.assert_array_equal(resumed.weight, uninterrupted.weight)  # as if nothing had been left behind
    aside = list(tmp_path.glob("last.ckpt.damaged-*"))
    assert len(aside) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not resuming from" in warnings[0] and reason in warnings[0]
    assert aside[0].name in warnings[0] and "\n" not in warnings[0]


@pytest.mark.parametrize("damage", ["empty", "truncated", "other bytes"])
def test_a_damaged_checkpoint_is_moved_aside_and_training_starts_again(tmp_path, data, uninterrupted, monkeypatch,
                                                                       caplog, damage):
    """A 0-byte file (a full disk), half a checkpoint (a kill while saving) or other bytes: the rerun trains
    from scratch to the uninterrupted result instead of failing on every retry."""
    crash_after_first_epoch(monkeypatch, tmp_path, data)
    last = tmp_path / "last.ckpt"
    content = last.read_bytes()
    last.write_bytes({"empty": b"", "truncated": content[: len(content) // 2], "other bytes": b"not a checkpoint" * 9}[damage])
    assert_moved_aside_and_trained_from_scratch(tmp_path, data, uninterrupted, caplog, "it does not load")


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path, data, uninterrupted, monkeypatch, caplog):
    """Left by a run with another learning rate (the same folder, the config changed in between)."""
    crash_after_first_epoch(monkeypatch, tmp_path, data, lr=0.5)
    assert_moved_aside_and_trained_from_scratch(tmp_path, data, uninterrupted, caplog, "hparams differ")


def test_a_checkpoint_of_other_data_is_not_resumed(tmp_path, data, uninterrupted, monkeypatch, caplog):
    x, y = data
    crash_after_first_epoch(monkeypatch, tmp_path, (x + 1, y))
    assert_moved_aside_and_trained_from_scratch(tmp_path, data, uninterrupted, caplog, "data differ")


def test_a_valid_checkpoint_is_resumed(tmp_path, data, uninterrupted, monkeypatch, caplog):
    crash_after_first_epoch(monkeypatch, tmp_path, data)
    with caplog.at_level(logging.INFO, logger="lightning_modules.core.training"):
        resumed = train_probe(*data, checkpoint_dir=tmp_path, **KWARGS)
    np.testing.assert_array_equal(resumed.weight, uninterrupted.weight)
    assert any("resuming from" in r.getMessage() for r in caplog.records)
    assert not list(tmp_path.glob("last.ckpt.damaged-*"))


def test_a_checkpoint_write_that_fails_leaves_the_previous_one_whole(tmp_path, data, monkeypatch):
    """A full disk while saving epoch 2: the new checkpoint's bytes went to a temporary file, then ENOSPC before
    it was complete. The previous checkpoint stays as it was and no temporary file is left."""
    import lightning_modules.core.io as io_module

    crash_after_first_epoch(monkeypatch, tmp_path, data)
    before = (tmp_path / "last.ckpt").read_bytes()

    def full_disk(path):
        assert path.name.startswith(".last.tmp.") and path.stat().st_size > 0  # written under a temporary name
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_module, "_fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train_probe(*data, checkpoint_dir=tmp_path, **KWARGS)
    monkeypatch.undo()
    assert (tmp_path / "last.ckpt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_error_lines_are_never_empty():
    assert error_line(EOFError()) == "EOFError"
    assert error_line(ValueError("bad value\nsecond line")) == "bad value"
    full = error_line(OSError(errno.ENOSPC, "No space left on device", "/results/x/metrics.json"))
    assert full.startswith("the disk is full writing /results/x/metrics.json") and "run the same command" in full


def test_enospc_at_each_artifact_write_of_a_head_run_leaves_nothing_half_written(tmp_path, digits_pixels,
                                                                                 monkeypatch):
    """A TEMI run writes checkpoints, assignments, probabilities and metrics.json, each through io.atomic_path.
    With the disk full at the i-th write (for every i): the error is ENOSPC, no temporary file is left and no
    metrics.json (the run's last write, what marks it done) exists; the rerun gives the undisturbed result."""
    import lightning_modules.core.io as io_module
    from lightning_modules.clustering.knn import build_knn_graph
    from lightning_modules.clustering.run import cluster_embeddings
    from lightning_modules.embeddings.artifact import write_embeddings

    x, y = digits_pixels
    write_embeddings(tmp_path / "emb", "all", x[:400], y[:400], {})
    build_knn_graph(tmp_path / "emb", "all", 10, tmp_path / "knn")
    params = {"epochs": 2, "batch_size": 128, "n_heads": 2, "hidden_dim": 16, "bottleneck_dim": 8, "progress": False}

    def run(out_dir):
        return cluster_embeddings(tmp_path / "emb", "all", "temi", params, k=5, seed=0, out_dir=out_dir,
                                  knn_dir=tmp_path / "knn", graph_k=10)

    real_fsync, writes = io_module._fsync, []
    monkeypatch.setattr(io_module, "_fsync", lambda path: (writes.append(path.name), real_fsync(path)))
    undisturbed = run(tmp_path / "undisturbed")
    monkeypatch.setattr(io_module, "_fsync", real_fsync)
    assert len(writes) >= 4  # checkpoints, assignments, probabilities, metrics.json
    expected = np.load(tmp_path / "undisturbed" / "assignments.npy")
    for failing in range(len(writes)):
        out_dir = tmp_path / f"full-at-{failing}"
        count = iter(range(len(writes) + 1))

        def full_disk(path):
            if next(count) == failing:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(path)

        monkeypatch.setattr(io_module, "_fsync", full_disk)
        with pytest.raises(OSError) as raised:
            run(out_dir)
        assert raised.value.errno == errno.ENOSPC
        monkeypatch.setattr(io_module, "_fsync", real_fsync)
        assert not [p for p in out_dir.rglob("*") if ".tmp." in p.name], failing
        assert not (out_dir / "metrics.json").exists()
        again = run(out_dir)
        np.testing.assert_array_equal(np.load(out_dir / "assignments.npy"), expected)
        assert again["acc"] == undisturbed["acc"] and again["train_loss"] == undisturbed["train_loss"]
