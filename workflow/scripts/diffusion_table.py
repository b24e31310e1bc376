from lightning_modules.jobs import job_logging
from lightning_modules.tables import build_diffusion_table

with job_logging(snakemake.log[0]):
    build_diffusion_table(snakemake.input.metrics, snakemake.output[0])
