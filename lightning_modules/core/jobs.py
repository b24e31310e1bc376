"""What every workflow job shares: its log file and its failure message."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path

# Library chatter a user cannot act on, kept out of job logs: Lightning's hint to use
# srun (jobs are started by Snakemake, on SLURM too), a deprecation inside Lightning, torchmetrics' note that
# KID keeps its features (it is given features, not images), faiss trying CPU-specific builds first.
QUIET_WARNINGS = (r".*The `srun` command is available.*", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
                  r".*will save all extracted features in buffer.*")
# Lightning's rank-zero notes (GPU available: False, `Trainer.fit` stopped: ...): the job's own lines say it
QUIET_LOGGERS = ("faiss.loader", "pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


def on_terminal(progress: bool | None) -> bool:
    """Whether to draw a progress bar: None means where a person watches (stderr is a terminal). A workflow
    job's stderr is its log file, where carriage-return bars are noise (training logs plain step lines)."""
    return sys.stderr.isatty() if progress is None else progress


# Lightning's advertising tip; nbconvert noting that matplotlib's figures carry no alt text
QUIET_MESSAGES = ("Tip:", "Alternative text is missing")


class _QuietMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(part in message for part in QUIET_MESSAGES)


def quiet_libraries() -> None:
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietMessages())


# the numbers a job's last log line quotes from its metrics file, where it has them
HEADLINE_METRICS = ("acc", "nmi", "clusters_used", "bound", "auroc", "fpr95", "sensitivity", "fd_classifier",
                    "fd_backbone", "kid_classifier", "train_accuracy", "recall_at_k")


def _library_loggers_to_root() -> None:
    """Lightning and MLflow give their loggers a handler of their own when imported before any logging set-up
    (as in the warm job server): send their records through the job's handler instead, in its format."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning", "mlflow"):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True


def _summary(outputs: list[str]) -> str:
    """`acc 0.86, nmi 0.83 -> results/.../metrics.json (+1 more)`: the headline numbers of the first JSON output
    that has some, and where the outputs went."""
    from lightning_modules.core.io import read_json

    numbers = ""
    for path in outputs:
        if path.endswith(".json") and os.path.exists(path):
            try:
                record = read_json(path)
            except ValueError:
                continue
            found = [f"{name} {record[name]:.4g}" for name in HEADLINE_METRICS
                     if isinstance(record, dict) and isinstance(record.get(name), (int, float))]
            if found:
                numbers = ", ".join(found) + " "
                break
    more = f" (+{len(outputs) - 1} more)" if len(outputs) > 1 else ""
    return f"{numbers}-> {outputs[0]}{more}" if outputs else numbers.strip()


def error_line(error: BaseException, writing=None) -> str:
    """One line for the terminal: a full disk named as such with the path (the error's, else `writing`: what the
    job was writing), an exception without a message by its type (an `EOFError` prints nothing of its own),
    anything else by the first line of its message."""
    import errno

    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        path = error.filename or writing
        where = f" writing {path}" if path else ""
        return f"the disk is full{where} (no space left on device): free space, then run the same command again"
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if not message:
        return type(error).__name__
    return message


@contextmanager
def job_logging(job):
    """Send everything a workflow job prints (Python, C++ libraries, progress bars) to its log file, framed by
    a first line saying what runs (rule, wildcards) and a last line with the seconds, headline numbers and
    outputs. `job` is the script's `snakemake` object.

    On failure the traceback goes to the log and one line naming the error to the terminal, then the
    job exits non-zero so Snakemake removes its partial outputs.
    """
    log_path = Path(job.log[0])
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
        _library_loggers_to_root()
        quiet_libraries()
        log = logging.getLogger("clusterlab.job")
        wildcards = " ".join(f"{name}={value}" for name, value in job.wildcards.items())
        log.info("%s %s(%d thread%s)", job.rule, f"{wildcards} " if wildcards else "", job.threads,
                 "" if job.threads == 1 else "s")
        started = time.perf_counter()
        try:
            yield
            log.info("done in %.1f s: %s", time.perf_counter() - started, _summary(list(job.output)))
        except Exception as error:  # noqa: BLE001 - reported in one line, the traceback kept in the log
            with suppress(OSError):  # the log may sit on the disk that is full
                traceback.print_exc()
            writing = Path(job.output[0]).parent if len(job.output) else log_path.parent
            print(f"error: {error_line(error, writing)} (details: {log_path})", file=terminal, flush=True)
            raise SystemExit(1) from None
        finally:
            with suppress(OSError):
                sys.stdout.flush()
                sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            terminal.close()
