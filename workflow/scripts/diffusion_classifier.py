from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.core.jobs import job_logging
from lightning_modules.diffusion.run import train_feature_classifier

with job_logging(snakemake):
    train_feature_classifier(snakemake.params.dataset, Path(snakemake.output.metrics).parent, snakemake.params.params)
