from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from lightning_modules.core.io import write_json
from lightning_modules.core.jobs import job_logging
from lightning_modules.analysis.reporting import finish_sweep_run
from lightning_modules.services.tracking import tracking_target

with job_logging(snakemake):
    record = finish_sweep_run(snakemake.params.results_dir, tracking_target(snakemake.input.tracking),
                              list(snakemake.input.reports))
    write_json(snakemake.output[0], record)
