from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.clustering.figures import draw_selected_figures
from lightning_modules.core.jobs import job_logging
from lightning_modules.services.tracking import tracking_target

with job_logging(snakemake):
    draw_selected_figures(snakemake.input.selection, [Path(path).parent for path in snakemake.input.assignments],
                          snakemake.params.seed, snakemake.input.embeddings, snakemake.output[0], snakemake.params.dataset,
                          map_path=snakemake.input.map or None, tracking=tracking_target(snakemake.input.tracking))
