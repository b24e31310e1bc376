"""Any clustering run's figures on request, beside it in <run>/figures/ (the sweep draws only the label-free pick's):

    python -m lightning_modules.workflow.figures results/digits/pixels/clusters/temi/k20/seed1

A command line of the top layer: it reads the sweep's config (validated, defaults filled in) to find the run's images."""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning_modules.clustering.figures import draw_cluster_figures
from lightning_modules.core.contracts import read_config_file
from lightning_modules.core.layout import ClusteringRun, Embeddings, parse
from lightning_modules.core.naming import primary_backbone
from lightning_modules.core.project import SCHEMA_FILE
from lightning_modules.workflow.config import validate_config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="a clustering run's gallery and cluster x class matrix")
    parser.add_argument("run_dir")
    parser.add_argument("--config", default="config/config.yaml", help="the sweep's config (the dataset's images)")
    arguments = parser.parse_args(argv)
    run = parse(arguments.run_dir)
    if not isinstance(run, ClusteringRun):
        raise SystemExit(f"error: {arguments.run_dir} is not a clustering run's folder")
    dataset = validate_config(read_config_file(arguments.config), SCHEMA_FILE)["datasets"][run.dataset]
    root = Path(arguments.run_dir).parents[len(Path(run.folder).parts) - 1]
    embeddings = root / Embeddings(run.dataset, primary_backbone(run.backbone)).file(f"{dataset['split']}.npy")
    record = draw_cluster_figures(arguments.run_dir, embeddings, Path(arguments.run_dir) / "figures", dataset)
    print(f"{', '.join(record['figures'])} -> {Path(arguments.run_dir) / 'figures'}")


if __name__ == "__main__":
    main()
