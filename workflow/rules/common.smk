# Config -> names and file lists. Rule files stay declarative and use what is defined here.
import json
import sys
from pathlib import Path

from lightning_modules.clustering import estimator_params
from lightning_modules.config import ConfigError, validate_config
from lightning_modules.data import files_fingerprint
from lightning_modules.naming import SLUG_PATTERN, backbone_slug
from lightning_modules.sweep import clustering_run_dirs
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
BACKBONES = {backbone_slug(backbone["spec"]): backbone for backbone in config["backbones"]}
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


def knn_file(wildcards):
    return results(f"{wildcards.dataset}/{wildcards.backbone}/knn/{clustering_split(wildcards)}.k{config['knn']['k']}.npy")


def clustering_inputs(wildcards):
    """Every method gets the kNN graph: heads train on it, and every run reports its kNN agreement."""
    split_files = f"{embeddings_dir(wildcards)}/{clustering_split(wildcards)}"
    return {"embeddings": f"{split_files}.npy", "labels": f"{split_files}.labels.npy", "knn": knn_file(wildcards)}


def method_params(method):
    return estimator_params(CLUSTERING["methods"][method])


def bound_files():
    if not CLUSTERING["upper_bound"]["enabled"]:
        return []
    datasets = CLUSTERING["upper_bound"].get("datasets", DATASETS)
    return expand(results("{dataset}/{backbone}/clusters/bound.json"), dataset=datasets, backbone=BACKBONES)


def upper_bound(dataset, backbone):
    """The bound for one dataset x backbone; waits for the checkpoint, so only call from input functions."""
    path = checkpoints.upper_cluster_bound.get(dataset=dataset, backbone=backbone).output[0]
    with open(path) as handle:
        return json.load(handle)["bound"]


def clustering_runs(filename):
    """Input function: `filename` of every clustering run in the sweep, K truncated at the upper cluster
    bound when config asks for it (then it waits for the bound's checkpoint)."""
    bound = CLUSTERING["upper_bound"]
    truncate = bound["enabled"] and bound["truncate_k"]
    bounded = bound.get("datasets", DATASETS)

    def limit(dataset, backbone):
        return upper_bound(dataset, backbone) if dataset in bounded else None

    def runs(wildcards):
        run_dirs = clustering_run_dirs(config, BACKBONES, limit if truncate else None)
        return [results(f"{run_dir}/{filename}") for run_dir in run_dirs]

    return runs
