from lightning_modules.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/job_server.py)

import os

from lightning_modules.jobs import job_logging
from lightning_modules.reporting import log_report, render_report

with job_logging(snakemake):
    # the notebook's parameters: every input but the template (as absolute paths), and the rule's params but
    # where the report is tracked
    params = dict(snakemake.params.items())
    tracking = {name: params.pop(name) for name in ("tracking_uri", "experiment")}
    inputs = {name: os.path.abspath(path) for name, path in snakemake.input.items() if name != "template"}
    render_report(snakemake.input.template, snakemake.output.notebook, snakemake.output.html,
                  parameters={**inputs, **params})
    log_report(**tracking, notebook=snakemake.output.notebook, html=snakemake.output.html)
