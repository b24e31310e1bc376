from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from pathlib import Path

from lightning_modules.embeddings.extract import extract_dataset_embeddings
from lightning_modules.core.jobs import job_logging

with job_logging(snakemake):
    p = snakemake.params
    extract_dataset_embeddings(
        dataset_name=snakemake.wildcards.dataset,
        dataset_cfg=p.dataset,
        split=snakemake.wildcards.split,
        backbone_spec=p.backbone["spec"],
        backbone_options={key: value for key, value in p.backbone.items() if key != "spec"},
        embeddings_dir=Path(snakemake.output.embeddings).parent,
        **p.options,
    )
