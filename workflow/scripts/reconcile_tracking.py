from lightning_modules.io import write_json
from lightning_modules.jobs import job_logging
from lightning_modules.tracking import reconcile

with job_logging(snakemake.log[0]):
    files = [*snakemake.input.clustering, *snakemake.input.ood, *snakemake.input.probes, *snakemake.input.diffusion]
    repaired = reconcile(snakemake.params.tracking_uri, snakemake.params.experiment, files)
    write_json(snakemake.output[0], {"results": len(files), **repaired})
