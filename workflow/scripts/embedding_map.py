from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from lightning_modules.embeddings.maps import write_map
from lightning_modules.core.jobs import job_logging

with job_logging(snakemake):
    settings = snakemake.params.settings
    write_map(snakemake.input[0], snakemake.output.coordinates, settings["method"], settings["max_points"],
              settings["seed"], threads=snakemake.threads)
