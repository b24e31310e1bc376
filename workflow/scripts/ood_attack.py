from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.core.jobs import job_logging
from lightning_modules.ood.adversarial import attack_ood_images

with job_logging(snakemake):
    attack_ood_images(out_dir=Path(snakemake.output.record).parent, **snakemake.params.run)
