"""How fast the embedded default sweep turns around, end to end:

    .venv/bin/python -m benchmarks.workflow

`demo_seconds`: the whole default sweep (config/config.yaml: clustering, bound, OOD, diffusion) from nothing,
run like `make demo` (local profile, both cores, jobs forked from the warm job server) in a temporary folder,
installation excluded; target <= 300 s. `noop_seconds`: the same command again, with nothing left to do.
`demo_jobs`: how many jobs the sweep ran. `--without-job-server` also runs it with every job a fresh Python
process (`job_server: false`), side by side, for the ratio.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_demo(workdir: Path, *extra: str) -> tuple[float, str]:
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    command = [snakemake, "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "workflow" / "profiles" / "local"),
               "--directory", str(workdir), *extra]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"the demo failed: {result.stderr[-2000:]}")
    return seconds, result.stdout + result.stderr


def main() -> None:
    import argparse

    from benchmarks.common import report, step

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="run in this new folder and keep its results (default: a "
                                                   "temporary folder)")
    parser.add_argument("--without-job-server", action="store_true",
                        help="also run the demo with job_server: false (every job its own Python process)")
    args = parser.parse_args()
    if args.keep is not None and args.keep.exists():
        raise SystemExit(f"--keep {args.keep}: the folder exists; give a new one")
    with tempfile.TemporaryDirectory(prefix="clusterlab-demo-") as folder:
        workdir = args.keep or Path(folder)
        workdir.mkdir(parents=True, exist_ok=True)
        step("the demo from nothing (~5 min)")
        demo, log = run_demo(workdir)
        jobs = re.findall(r"(\d+) of (\d+) steps \(100%\) done", log)
        step("the same command again, nothing to do")
        noop, _ = run_demo(workdir)
    rows = [("demo_seconds", demo, "embedded default sweep from nothing, 2 cores (target <= 300)"),
            ("demo_jobs", float(jobs[-1][1]) if jobs else float("nan"), "jobs in the sweep"),
            ("noop_seconds", noop, "the same again with nothing to do (target <= 10)")]
    if args.without_job_server:
        with tempfile.TemporaryDirectory(prefix="clusterlab-demo-") as folder:
            step("the demo from nothing again, every job a fresh Python process (~10 min)")
            cold, _ = run_demo(Path(folder), "--config", "job_server=False")
        rows += [("demo_seconds_without_job_server", cold, "job_server: false"),
                 ("job_server_speedup", cold / demo, "without / with, same machine, one after the other")]
    report("workflow", rows)


if __name__ == "__main__":
    main()
