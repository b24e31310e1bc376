from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

import os

from lightning_modules.core.jobs import job_logging
from lightning_modules.analysis.reporting import log_report, render_report
from lightning_modules.services.tracking import tracking_target

with job_logging(snakemake):
    # the notebook's parameters: every input but the template and the tracking target (as absolute paths), and
    # the rule's params
    inputs = {name: os.path.abspath(path) if isinstance(path, str) else [os.path.abspath(one) for one in path]
              for name, path in snakemake.input.items() if name not in ("template", "tracking")}
    render_report(snakemake.input.template, snakemake.output.notebook, snakemake.output.html,
                  parameters={**inputs, **dict(snakemake.params.items())})
    log_report(**tracking_target(snakemake.input.tracking), notebook=snakemake.output.notebook, html=snakemake.output.html)
