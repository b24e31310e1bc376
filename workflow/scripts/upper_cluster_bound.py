from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.clustering import estimator_params
from lightning_modules.clustering.bound import run_bound_job
from lightning_modules.core.jobs import job_logging
from lightning_modules.services.tracking import tracking_target

with job_logging(snakemake):
    p = snakemake.params
    run_bound_job(
        **tracking_target(snakemake.input.tracking),
        tags=dict(snakemake.wildcards.items()),
        embeddings_dir=Path(snakemake.input.embeddings).parent,
        split=p.split,
        knn_dir=Path(snakemake.input.knn).parent,
        graph_k=p.graph_k,
        out_path=snakemake.output[0],
        k=p.bound["k"],
        seed=p.bound["seed"],
        **estimator_params(p.bound["temi"]),
    )
