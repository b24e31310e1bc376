from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from lightning_modules.core.jobs import job_logging
from lightning_modules.analysis.tables import build_diffusion_table

with job_logging(snakemake):
    build_diffusion_table(snakemake.input.metrics, snakemake.output[0], snakemake.input.published)
