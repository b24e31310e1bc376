"""The reliability figures in one table, from one command (`make reliability`, ~13 minutes on 2 cores):

    .venv/bin/python -m benchmarks.reliability

Runs the tests that try faults on purpose and counts what they tried and what was handled:
- bad inputs: every malformed config and file of tests/test_bad_inputs.py and the config mistakes of
  tests/test_config.py (one line, no job, no partial artifact), plus the fuzzed variants of tests/test_contracts.py
  (each fuzz test records how many seeded variants it tried);
- kill points: every training stage killed mid-run and resumed (heads, probe, self-distillation, diffusion) and
  the SIGKILLed sweep of tests/test_resume.py, each compared bit for bit with an uninterrupted run;
- tracking faults: an unusable store, an unreachable server, 8 parallel writers, a corrupted store reconciled;
  each test asserts that no run is lost (runs lost = 0 when it passes);
- left-behind files: empty, truncated, foreign and other-data checkpoints, a checkpoint write failing mid-way,
  and a real full disk (a small tmpfs under results/, where mount is allowed);
- tracking access: the shared server's authentication (tests/test_tracking_server.py);
- tracking load: 200 concurrent clients on the shared server over PostgreSQL, once with the server killed and
  restarted mid-load, and on SQLite beside it (tests/test_tracking_load.py, marker `load`; its measurements in
  results/bench/tracking_load.json).
Writes results/bench/reliability.json."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

CATEGORIES = {
    "bad inputs": ["tests/test_bad_inputs.py", "tests/test_config.py::test_ood_and_diffusion_mistakes_fail_in_one_line_before_any_job",
                   "tests/test_contracts.py"],
    "kill points": ["tests/test_heads.py::test_a_head_killed_mid_training_resumes_to_the_uninterrupted_result",
                    "tests/test_ood_scorers.py::test_a_probe_killed_mid_training_resumes_to_the_uninterrupted_result",
                    "tests/test_self_distillation.py::test_killed_training_resumes_to_the_uninterrupted_result",
                    "tests/test_diffusion.py::test_a_killed_diffusion_run_resumes_to_the_uninterrupted_result",
                    "tests/test_resume.py"],
    "tracking faults": ["tests/test_tracking.py::test_an_unusable_store_warns_and_loses_nothing",
                        "tests/test_tracking.py::test_a_job_with_an_unreachable_server_keeps_its_result_and_warns_once",
                        "tests/test_tracking.py::test_eight_parallel_jobs_log_every_run_to_sqlite",
                        "tests/test_tracking.py::test_reconciliation_makes_the_store_mirror_the_results_exactly"],
    "left-behind files": ["tests/test_checkpoints.py", "tests/test_full_disk.py"],
    "tracking access": ["tests/test_tracking_server.py"],
    "tracking load": ["-m", "load", "tests/test_tracking_load.py"],  # -m: make test's addopts leave the marker out
}
def run_category(targets: list[str]) -> list[tuple[str, int, bool]]:
    """(test case, cases it tried, passed) of every test the targets collect; a fuzz test records how many
    variants it tried as the junit property `cases`."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                        *targets], check=False, capture_output=True, text=True)
        cases = ElementTree.parse(report).getroot().iter("testcase")
        return [(case.get("name"),
                 int(next((p.get("value") for p in case.iter("property") if p.get("name") == "cases"), 1)),
                 not any(child.tag in ("failure", "error", "skipped") for child in case)) for case in cases]


def main() -> None:
    rows = {}
    for category, targets in CATEGORIES.items():
        print(f"  {category}: running {len(targets)} test targets ...", flush=True)
        cases = run_category(targets)
        rows[category] = {"tried": sum(count for _, count, _ in cases),
                          "handled": sum(count for _, count, passed in cases if passed),
                          "failed": [name for name, _, passed in cases if not passed]}
    print(f"\n{'fault':<18}{'tried':>8}{'handled':>9}   what 'handled' means")
    meaning = {"bad inputs": "one line naming the file/key and the fix, no traceback, no partial artifact",
               "kill points": "resumed to the uninterrupted result, bit for bit",
               "tracking faults": "no run lost: the store holds one finished run per result",
               "left-behind files": "a damaged, truncated or foreign checkpoint moved aside with one warning and the "
                                    "undisturbed result reached; a full disk is one line and, once space is freed, "
                                    "the rerun gives the undisturbed tables",
               "tracking access": "the shared server refuses requests without credentials (401) and a read-only "
                                  "user's writes (403); secrets owner-only; no auth beyond loopback refused",
               "tracking load": "200 clients at once, and a server restart mid-load: no run lost or duplicated, every "
                                "run complete (SQLite measured beside, not required to hold)"}
    for category, row in rows.items():
        print(f"{category:<18}{row['tried']:>8}{row['handled']:>9}   {meaning[category]}")
        for name in row["failed"]:
            print(f"{'':<18}FAILED {name}")
    out = Path("results/bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(rows, indent=2) + "\n")
    if any(row["failed"] for row in rows.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
