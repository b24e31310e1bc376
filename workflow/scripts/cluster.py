from pathlib import Path

from lightning_modules.clustering.run import RUN_METRICS, cluster_embeddings
from lightning_modules.jobs import job_logging
from lightning_modules.tracking import log_run

with job_logging(snakemake.log[0]):
    w, p = snakemake.wildcards, snakemake.params
    run_dir = Path(snakemake.output.metrics).parent
    record = cluster_embeddings(
        embeddings_dir=Path(snakemake.input.embeddings).parent,
        split=p.split,
        method=w.method,
        params=p.method_params,
        k=int(w.k),
        seed=int(w.seed),
        out_dir=run_dir,
        run_info={"dataset": w.dataset, "backbone": w.backbone},
        threads=snakemake.threads,
    )
    log_run(
        p.tracking_uri, p.experiment, run_name=str(run_dir), tags=dict(w.items()),
        params={"split": p.split, "k": w.k, "seed": w.seed, **p.method_params},
        metrics={name: record[name] for name in RUN_METRICS},
        artifacts=[snakemake.output.metrics],
    )
