"""What every workflow job shares: its log file and its failure message."""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

# Library chatter a user cannot act on, kept out of job logs: Lightning's advertising tip and its hint to use
# srun (jobs are started by Snakemake, on SLURM too), a deprecation inside Lightning, torchmetrics' note that
# KID keeps its features (it is given features, not images), faiss trying CPU-specific builds first.
QUIET_WARNINGS = (r".*The `srun` command is available.*", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
                  r".*will save all extracted features in buffer.*")
QUIET_LOGGERS = ("faiss.loader",)


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet_libraries() -> None:
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoTips())


@contextmanager
def job_logging(log_path: str | os.PathLike):
    """Send everything the job prints (Python, C++ libraries, progress bars) to its log file.

    On failure the traceback goes to the log and one line naming the error to the terminal, then the
    job exits non-zero so Snakemake removes its partial outputs.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(2), "w")
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", buffering=1) as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        quiet_libraries()
        try:
            yield
        except Exception as error:  # noqa: BLE001 - reported in one line, the traceback kept in the log
            traceback.print_exc()
            print(f"error: {error} (details: {log_path})", file=terminal, flush=True)
            raise SystemExit(1) from None
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            terminal.close()
