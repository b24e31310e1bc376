"""How fast the embedded default sweep turns around, end to end:

    .venv/bin/python -m benchmarks.workflow

`demo_seconds`: the whole default sweep (config/config.yaml: clustering, bound, OOD) from nothing, run like
`make demo` (local profile, both cores) in a temporary folder, installation excluded. `noop_seconds`: the
same command again, with nothing left to do. `demo_jobs`: how many jobs the sweep ran.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_demo(workdir: Path) -> tuple[float, str]:
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    command = [snakemake, "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "workflow" / "profiles" / "local"),
               "--directory", str(workdir)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"the demo failed: {result.stderr[-2000:]}")
    return seconds, result.stdout + result.stderr


def main() -> None:
    import argparse

    from benchmarks.common import report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="run in this new folder and keep its results (default: a "
                                                   "temporary folder)")
    args = parser.parse_args()
    if args.keep is not None and args.keep.exists():
        raise SystemExit(f"--keep {args.keep}: the folder exists; give a new one")
    with tempfile.TemporaryDirectory(prefix="clusterlab-demo-") as folder:
        workdir = args.keep or Path(folder)
        workdir.mkdir(parents=True, exist_ok=True)
        demo, log = run_demo(workdir)
        jobs = re.findall(r"(\d+) of (\d+) steps \(100%\) done", log)
        noop, _ = run_demo(workdir)
    rows = [("demo_seconds", demo, "embedded default sweep from nothing, 2 cores (target <= 600)"),
            ("demo_jobs", float(jobs[-1][1]) if jobs else float("nan"), "jobs in the sweep"),
            ("noop_seconds", noop, "the same again with nothing to do (target <= 10)")]
    report("workflow", rows)


if __name__ == "__main__":
    main()
