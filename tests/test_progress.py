"""Snakemake's output off a terminal: one line per finished job, everything else as it came."""

from lightning_modules.services.progress import job_lines

SNAKEMAKE_OUTPUT = """Building DAG of jobs...
Select jobs to execute...
Execute 2 jobs...

[Fri Nov 27 22:25:49 2026]
Finished jobid: 44 (Rule: embedding_map)
1 of 4 steps (25%) done
Select jobs to execute...
Execute 1 jobs...
[Fri Nov 27 22:25:53 2026]
Error in rule cluster:
    message: the disk is full
[Fri Nov 27 22:25:56 2026]
Finished jobid: 0 (Rule: all)
4 of 4 steps (100%) done
Complete log(s): .snakemake/log/x.snakemake.log
""".splitlines(keepends=True)


def test_one_line_per_finished_job_and_errors_kept():
    assert list(job_lines(SNAKEMAKE_OUTPUT)) == [
        "Building DAG of jobs...",
        "",
        "[22:25:49] 1/4 (25%) embedding_map",
        "Error in rule cluster:",
        "    message: the disk is full",
        "[22:25:56] 4/4 (100%) all",
        "Complete log(s): .snakemake/log/x.snakemake.log",
    ]
