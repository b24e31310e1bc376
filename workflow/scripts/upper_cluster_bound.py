from pathlib import Path

from lightning_modules.clustering import estimator_params
from lightning_modules.clustering.bound import upper_cluster_bound
from lightning_modules.jobs import job_logging

with job_logging(snakemake.log[0]):
    p = snakemake.params
    upper_cluster_bound(
        embeddings_dir=Path(snakemake.input.embeddings).parent,
        split=p.split,
        knn_dir=Path(snakemake.input.knn).parent,
        graph_k=p.graph_k,
        out_path=snakemake.output[0],
        k=p.bound["k"],
        seed=p.bound["seed"],
        **estimator_params(p.bound["temi"]),
    )
