"""What every workflow job shares: its log file and its failure message."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path


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
