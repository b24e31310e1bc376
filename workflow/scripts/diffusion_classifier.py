from pathlib import Path

from lightning_modules.jobs import job_logging
from lightning_modules.diffusion.run import train_feature_classifier

with job_logging(snakemake.log[0]):
    train_feature_classifier(snakemake.params.dataset, Path(snakemake.output.metrics).parent, snakemake.params.params)
