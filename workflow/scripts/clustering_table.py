from lightning_modules.jobs import job_logging
from lightning_modules.tables import build_clustering_table

with job_logging(snakemake.log[0]):
    build_clustering_table(snakemake.input, snakemake.output[0])
