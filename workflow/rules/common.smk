# Config -> names and file lists. Rule files stay declarative and use what is defined here.
import sys
from pathlib import Path

from lightning_modules.config import ConfigError, validate_config
from lightning_modules.naming import SLUG_PATTERN, backbone_slug
from lightning_modules.tracking import default_tracking_uri

try:
    validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml")
except ConfigError as error:
    # One line, before any job runs; a traceback would bury it.
    print(error, file=sys.stderr)
    sys.exit(1)

RESULTS = config["results_dir"]
SWEEP = config["sweep"]
TRACKING_URI = config["tracking_uri"] or default_tracking_uri(RESULTS)
DATASETS = config["datasets"]
BACKBONES = {backbone_slug(spec): spec for spec in config["backbones"]}
CLUSTERING = config["clustering"]


wildcard_constraints:
    dataset=SLUG_PATTERN,
    backbone=SLUG_PATTERN,
    method=SLUG_PATTERN,
    split=SLUG_PATTERN,
    k=r"\d+",
    seed=r"\d+",


def results(path):
    """A path under the results folder (`path` may hold {wildcards})."""
    return os.path.join(RESULTS, path)


def embeddings_dir(wildcards):
    return results(f"{wildcards.dataset}/{wildcards.backbone}/embeddings")


def clustering_split(wildcards):
    return DATASETS[wildcards.dataset]["split"]


def clustering_runs(filename):
    """`filename` of every clustering run in the sweep: datasets x backbones x methods x K x seeds."""
    return expand(
        results("{dataset}/{backbone}/clusters/{method}/k{k}/seed{seed}/" + filename),
        dataset=DATASETS,
        backbone=BACKBONES,
        method=CLUSTERING["methods"],
        k=CLUSTERING["k"],
        seed=CLUSTERING["seeds"],
    )
