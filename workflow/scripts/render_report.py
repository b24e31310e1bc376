import os

from lightning_modules.jobs import job_logging
from lightning_modules.reporting import render_report

with job_logging(snakemake.log[0]):
    # the notebook's parameters: every input but the template (as absolute paths), and the rule's params
    inputs = {name: os.path.abspath(path) for name, path in snakemake.input.items() if name != "template"}
    render_report(snakemake.input.template, snakemake.output.notebook, snakemake.output.html,
                  parameters={**inputs, **dict(snakemake.params.items())})
