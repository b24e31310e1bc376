from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.core.jobs import job_logging
from lightning_modules.services.tracking import tracking_target
from lightning_modules.ood.probe.labels import run_probe_job

with job_logging(snakemake):
    run_probe_job(**tracking_target(snakemake.input.tracking),
                  tags=dict(snakemake.wildcards.items()), out_dir=Path(snakemake.output.probe).parent,
                  **snakemake.params.run)
