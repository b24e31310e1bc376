from pathlib import Path

from lightning_modules.jobs import job_logging
from lightning_modules.ood.run import attack_ood_images

with job_logging(snakemake.log[0]):
    attack_ood_images(out_dir=Path(snakemake.output.record).parent, **snakemake.params.run)
