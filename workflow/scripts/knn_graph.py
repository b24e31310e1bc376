from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.clustering.knn import build_knn_graph
from lightning_modules.core.jobs import job_logging

with job_logging(snakemake):
    build_knn_graph(
        embeddings_dir=Path(snakemake.input.embeddings).parent,
        split=snakemake.wildcards.split,
        k=int(snakemake.wildcards.n),
        knn_dir=Path(snakemake.output.indices).parent,
        **snakemake.params.search,
    )
