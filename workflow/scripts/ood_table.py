from lightning_modules.jobs import job_logging
from lightning_modules.tables import build_ood_table, build_probe_table

with job_logging(snakemake.log[0]):
    build_ood_table(snakemake.input.metrics, snakemake.output.table)
    build_probe_table(snakemake.input.probes, snakemake.output.probes)
