from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from lightning_modules.core.jobs import job_logging
from lightning_modules.analysis.tables import build_ood_table, build_probe_table

with job_logging(snakemake):
    build_ood_table(snakemake.input.metrics, snakemake.output.table, snakemake.input.published)
    build_probe_table(snakemake.input.probes, snakemake.output.probes)
