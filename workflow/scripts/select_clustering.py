from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.clustering.selection import run_selection
from lightning_modules.core.jobs import job_logging

with job_logging(snakemake):
    run_selection([Path(path).parent for path in snakemake.input.metrics], snakemake.input.embeddings,
                  snakemake.output[0], dict(snakemake.wildcards.items()), snakemake.params.criterion)
