from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.clustering.run import run_clustering_job
from lightning_modules.core.jobs import job_logging
from lightning_modules.services.tracking import tracking_target

with job_logging(snakemake):
    w, p = snakemake.wildcards, snakemake.params
    run_clustering_job(
        **tracking_target(snakemake.input.tracking),
        tags={**dict(w.items()), **p.role_tags},
        embeddings_dir=Path(snakemake.input.embeddings).parent,
        split=p.split,
        method=w.method,
        params=p.method_params,
        k=int(w.k),
        seed=int(w.seed),
        out_dir=Path(snakemake.output.metrics).parent,
        run_info={"dataset": w.dataset, "backbone": w.backbone},
        knn_dir=Path(snakemake.input.knn).parent,
        space_dirs=[Path(path).parent for path in snakemake.input.spaces],
        graph_k=p.graph_k,
    )
