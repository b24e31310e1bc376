from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.core.jobs import job_logging
from lightning_modules.services.tracking import tracking_target
from lightning_modules.diffusion.run import run_diffusion_job

with job_logging(snakemake):
    metrics = snakemake.output.metrics
    out_dirs = [Path(path).parent for path in ([metrics] if isinstance(metrics, str) else metrics)]
    run_diffusion_job(**tracking_target(snakemake.input.tracking),
                      tags=dict(snakemake.wildcards.items()), out_dirs=out_dirs, **snakemake.params.run)
