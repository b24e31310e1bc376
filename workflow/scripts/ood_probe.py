from pathlib import Path

from lightning_modules.jobs import job_logging
from lightning_modules.ood.run import run_probe_job

with job_logging(snakemake.log[0]):
    run_probe_job(tracking_uri=snakemake.params.tracking_uri, experiment=snakemake.params.experiment,
                  tags=dict(snakemake.wildcards.items()), out_dir=Path(snakemake.output.probe).parent,
                  **snakemake.params.run)
