from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.analysis.claims import register_analysis
from lightning_modules.core.io import write_json
from lightning_modules.core.jobs import job_logging
from lightning_modules.services.tracking import init_tracking

with job_logging(snakemake):
    p = snakemake.params
    # the claims' analysis, registered before any result of this folder (the first registration stands)
    registration = register_analysis(p.registration, p.sweep, results_exist=any(Path(p.tables).glob("*.parquet")))
    write_json(snakemake.output[0], init_tracking(p.tracking_uri, p.experiment, p.artifact_root, p.sweep,
                                                  registration))
