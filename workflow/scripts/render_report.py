import os

from lightning_modules.jobs import job_logging
from lightning_modules.reporting import render_report

with job_logging(snakemake.log[0]):
    render_report(
        snakemake.input.template, snakemake.output.notebook, snakemake.output.html,
        parameters={"table_path": os.path.abspath(snakemake.input.table),
                    "bounds_path": os.path.abspath(snakemake.input.bounds)},
    )
