"""Snakemake's output off a terminal (CI logs, a file): one line per finished job instead of five,

    [22:25:49] 12/150 (8%) cluster

and everything else (errors, warnings, the job statistics, the closing lines) passed through as it came. On a
terminal `make run` uses snakemake-logger-plugin-rich's live progress instead (done/total per rule, elapsed time).

    snakemake ... 2>&1 | python -m lightning_modules.services.progress
"""

from __future__ import annotations

import re
import sys
from typing import Iterable, Iterator

_STAMP = re.compile(r"^\[\w{3} \w{3} +\d+ (\d\d:\d\d:\d\d) \d{4}\]$")
_FINISHED = re.compile(r"^Finished jobid: \d+ \(Rule: ([\w-]+)\)$")
_STEPS = re.compile(r"^(\d+) of (\d+) steps \((\d+%)\) done$")
# the scheduler's chatter around every job: nothing a reader needs
_NOISE = ("Select jobs to execute...", "Execute ", "Using shell: ")


def job_lines(lines: Iterable[str]) -> Iterator[str]:
    """Snakemake's lines -> the same output with each finished job's timestamp, 'Finished jobid' and 'k of n steps'
    lines folded into one."""
    stamp = rule = None
    for raw in lines:
        line = raw.rstrip("\n")
        text = line.strip()
        if match := _STAMP.match(text):  # the next job line's time
            stamp = match.group(1)
            continue
        if match := _FINISHED.match(text):
            rule = match.group(1)
            continue
        if match := _STEPS.match(text):
            done, total, share = match.groups()
            yield f"[{stamp or '--:--:--'}] {done}/{total} ({share}) {rule or 'job'}"
            stamp = rule = None
            continue
        if text.startswith(_NOISE) or (stamp is not None and not text):
            continue
        yield line


def main() -> None:
    for line in job_lines(sys.stdin):
        print(line, flush=True)


if __name__ == "__main__":
    main()
