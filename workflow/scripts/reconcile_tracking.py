from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from lightning_modules.core.io import write_json
from lightning_modules.core.jobs import job_logging
from lightning_modules.services.tracking import reconcile, tracking_target

with job_logging(snakemake):
    files = [*snakemake.input.clustering, *snakemake.input.ood, *snakemake.input.probes, *snakemake.input.diffusion,
             *snakemake.input.bounds]
    repaired = reconcile(**tracking_target(snakemake.input.tracking), metrics_files=files)
    write_json(snakemake.output[0], {"results": len(files), **repaired})
