from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from lightning_modules.core.jobs import job_logging
from lightning_modules.analysis.tables import (build_bounds_table, build_clustering_table, build_selection_curves,
                                              build_selection_table)

with job_logging(snakemake):
    build_clustering_table(snakemake.input.metrics, snakemake.output.runs, snakemake.input.published)
    build_bounds_table(snakemake.input.bounds, snakemake.output.bounds)
    build_selection_table(snakemake.input.selections, snakemake.output.selection)
    build_selection_curves(snakemake.input.selections, snakemake.output.curves)
