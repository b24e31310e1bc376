# Config -> names and file lists. Rule files stay declarative and use what is defined here.
import json
import sys
from pathlib import Path

from lightning_modules.claims import claims_context
from lightning_modules.clustering import METHODS, estimator_params
from lightning_modules.config import ConfigError, canonical, validate_config
from lightning_modules.data import files_fingerprint
from lightning_modules.naming import SLUG_PATTERN, backbone_slug
from lightning_modules.ood import OOD_SCORERS, probe_training, scorer_negatives, scorer_params, split_scorer_name
from lightning_modules.published import PUBLISHED_FILE
from lightning_modules.diffusion import classifier_settings, parse_condition, run_settings
from lightning_modules import layout
from lightning_modules.layout import (ClusterBound, ClusterFigures, ClusteringRun, DiffusionClassifier, DiffusionRun,
                                      EmbeddingMap, Embeddings, KnnGraph, OodAttack, OodProbe, OodRun, Report, Selection,
                                      Table)
from lightning_modules.sweep import (SPACE_SEPARATOR, primary_backbone, space_backbones, clustering_runs, describe_side,
                                     diffusion_backbone, diffusion_runs, job_resources, ood_pairs, ood_probes, ood_runs)
from lightning_modules.tracking import ROLE_TAG, default_tracking_uri

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
# every backbone something embeds with: the sweep's, and those only a multi-space method (TURTLE) reads
EMBEDDED_BACKBONES = {**{backbone_slug(b["spec"]): b for own in config["clustering"]["methods"].values()
                         for space in space_backbones(own) for b in space}, **BACKBONES}
CLUSTERING = config["clustering"]
OOD = config["ood"]
OOD_PAIRS = ood_pairs(config)
DIFFUSION = config["diffusion"]
DIFFUSION_BACKBONE = diffusion_backbone(config)
DIFFUSION_PARAMS = run_settings(DIFFUSION)  # what every diffusion run is trained, sampled and scored with
DIFFUSION_CLASSIFIER_PARAMS = classifier_settings(DIFFUSION)  # a diffusion setting outside it must not retrain it
# GPUs a diffusion job asks the cluster for: its Lightning devices (0 where a run is configured for CPU)
DIFFUSION_GPUS = DIFFUSION["devices"] if isinstance(DIFFUSION["devices"], int) else 1


wildcard_constraints:
    split=SLUG_PATTERN,
    **layout.wildcard_constraints(),


def results(path):
    """A path under the results folder (`path` may hold {wildcards})."""
    return os.path.join(RESULTS, path)


def logs(path):
    """A log file (path may hold {wildcards}) in the results folder's log folder."""
    return results(f"{layout.LOGS}/{path}")


def result(record, name=""):
    """A file `name` of a layout record (or its folder) under the results folder."""
    return results(record.file(name) if name else record.folder)


TRACKING = ancient(results(layout.TRACKING_EXPERIMENT))
# the upper cluster bound -> diffusion chain is a sweep's longest: started first, its jobs overlap the many short
# clustering and OOD jobs instead of running after them (the demo's last minute was diffusion alone)
LONG_CHAIN_PRIORITY = 10
# the store's first job runs before any other: the sweep's parent run starts with it (its duration is the sweep's),
# and without a priority Snakemake's scheduler, which favours jobs with large inputs, would start it last
FIRST_JOB_PRIORITY = 100
# the stage reports a sweep ends with
SWEEP_REPORTS = [results(Report().file(f"{name}.html")) for name, wanted in
                 (("clustering", True), ("ood", bool(OOD_PAIRS)), ("diffusion", bool(DIFFUSION["datasets"])),
                  ("claims", True)) if wanted]  # ancient: logging to the store must not rerun finished runs


def embeddings_dir(wildcards, dataset=None):
    """The (primary) backbone's embeddings of the wildcards' dataset (or of `dataset`)."""
    return result(Embeddings(dataset or wildcards.dataset, primary_backbone(wildcards.backbone)))


def clustering_split(wildcards):
    return DATASETS[wildcards.dataset]["split"]


def knn_file(wildcards):
    graph = KnnGraph(wildcards.dataset, primary_backbone(wildcards.backbone))
    return result(graph, f"{clustering_split(wildcards)}.k{config['knn']['k']}.npy")


def clustering_inputs(wildcards):
    """Every method gets the kNN graph: heads train on it, and every run reports its kNN agreement."""
    split_files = f"{embeddings_dir(wildcards)}/{clustering_split(wildcards)}"
    others = wildcards.backbone.split(SPACE_SEPARATOR)[1:]  # a multi-space setting's other backbones
    spaces = [result(Embeddings(wildcards.dataset, other), f"{clustering_split(wildcards)}.npy") for other in others]
    return {"embeddings": f"{split_files}.npy", "labels": f"{split_files}.labels.npy", "knn": knn_file(wildcards),
            "spaces": spaces}


# the clustering runs the clustering table lists; any other (the cluster-* OOD scorers' clustering) is a helper
TABLE_CLUSTERINGS = set(clustering_runs(config, BACKBONES))


def clustering_role_tags(wildcards):
    run = ClusteringRun(wildcards.dataset, wildcards.backbone, wildcards.method, int(wildcards.k), int(wildcards.seed))
    return {} if run in TABLE_CLUSTERINGS else {ROLE_TAG: "helper"}


# Jobs of seconds on a CPU (k-means runs; the OOD scores, self-distillation's training aside): on a cluster the
# slurm profile runs many of them in one allocation (its `group-components` for this group); local runs ignore
# groups
SMALL_JOBS = "small-cpu"


def cluster_group(wildcards):
    return SMALL_JOBS if METHODS.entry(wildcards.method).info.get("small") else None


def ood_score_group(wildcards):
    return None if scorer_negatives(wildcards.scorer) else SMALL_JOBS


def method_params(method):
    return estimator_params(CLUSTERING["methods"][method])


def setting_runs(filename):
    """Input function: `filename` of every clustering run of the wildcards' dataset x backbone."""
    def runs(wildcards):
        return [result(run, filename) for run in sweep_clustering_runs()
                if run.setting == (wildcards.dataset, wildcards.backbone)]

    return runs


def clustering_settings():
    """Every dataset x backbone that has clustering runs, in the grid's order."""
    return list(dict.fromkeys(run.setting for run in clustering_runs(config, BACKBONES)))


def selection_files():
    """One label-free selection per dataset x backbone that has clustering runs."""
    return [result(Selection(*setting), "selection.json") for setting in clustering_settings()]


def figure_folders():
    """The figures of each dataset x backbone's selected clustering run."""
    return [result(ClusterFigures(*setting)) for setting in clustering_settings()]


def map_file(wildcards):
    """The 2-D map of the wildcards' clustered embeddings ([] without maps)."""
    if config["maps"]["method"] is None:
        return []
    return result(EmbeddingMap(wildcards.dataset, primary_backbone(wildcards.backbone)), f"{clustering_split(wildcards)}.npy")


def bound_files():
    if not CLUSTERING["upper_bound"]["enabled"]:
        return []
    datasets = CLUSTERING["upper_bound"].get("datasets", DATASETS)
    return [result(ClusterBound(dataset, backbone), "bound.json") for dataset in datasets for backbone in BACKBONES]


def upper_bound(dataset, backbone):
    """The bound for one dataset x backbone; waits for the checkpoint, so only call from input functions."""
    path = checkpoints.upper_cluster_bound.get(dataset=dataset, backbone=backbone).output[0]
    with open(path) as handle:
        return json.load(handle)["bound"]


def sweep_clustering_runs():
    """Every clustering run in the sweep, K truncated at the upper cluster bound when config asks for it (then
    it waits for the bound's checkpoint: call it from input functions only)."""
    bound = CLUSTERING["upper_bound"]
    truncate = bound["enabled"] and bound["truncate_k"]
    bounded = bound.get("datasets", DATASETS)

    def limit(dataset, backbone):
        return upper_bound(dataset, backbone) if dataset in bounded else None

    return clustering_runs(config, BACKBONES, limit if truncate else None)


def clustering_run_files(filename):
    """Input function: `filename` of every clustering run in the sweep (sweep_clustering_runs)."""
    return lambda wildcards: [result(run, filename) for run in sweep_clustering_runs()]


def ood_pair(wildcards):
    pair = OOD_PAIRS[wildcards.ood]
    if pair["in"] != wildcards.dataset:
        raise ValueError(f"OOD pair '{wildcards.ood}' has in-dataset '{pair['in']}', not '{wildcards.dataset}'")
    return pair


def ood_sides(wildcards):
    """Embedding files of the ID fit split, the ID eval split and the OOD eval split."""
    pair, split = ood_pair(wildcards), OOD["eval_split"]
    ood_dir = embeddings_dir(wildcards, pair["out"]["dataset"])
    fit = f"{embeddings_dir(wildcards)}/{clustering_split(wildcards)}"
    return {"fit": f"{fit}.npy", "fit_meta": f"{fit}.meta.json", "id": f"{embeddings_dir(wildcards)}/{split}.npy",
            "ood": f"{ood_dir}/{split}.npy", "ood_meta": f"{ood_dir}/{split}.meta.json"}


def cluster_assignments(wildcards):
    clusters = OOD["clusters"]
    run = ClusteringRun(wildcards.dataset, wildcards.backbone, clusters["method"], clusters["k"], clusters["seed"])
    return result(run, "assignments.npy")


def attack_dir(wildcards, style):
    return result(OodAttack(wildcards.dataset, wildcards.backbone, wildcards.ood, style))


def probe_file(wildcards, source):
    return result(OodProbe(wildcards.dataset, wildcards.backbone, source), "probe.npz")


def ood_inputs(wildcards):
    base, style = split_scorer_name(wildcards.scorer)
    info = OOD_SCORERS.entry(base).info
    inputs = ood_sides(wildcards)
    if info.get("probe"):
        inputs["probe"] = probe_file(wildcards, info["probe"])
    elif info.get("labels") == "clusters":
        inputs["assignments"] = cluster_assignments(wildcards)
    if style:
        inputs["attack"] = f"{attack_dir(wildcards, style)}/attack.json"
    negatives = negatives_side(wildcards)
    if negatives:
        for split in (negatives["split"], OOD["eval_split"]):
            inputs[f"negatives_{split}"] = f"{negatives['dir']}/{split}.npy"
    return inputs


def negatives_side(wildcards):
    """`{dataset, dir, split}` of the shifted images a scorer trains against (`ood.negatives`), or None."""
    name = scorer_negatives(wildcards.scorer)
    if name is None:
        return None
    dataset = OOD["negatives"][name]
    return {"dataset": dataset, "dir": embeddings_dir(wildcards, dataset),
            "split": DATASETS[dataset]["split"]}


def ood_run_params(wildcards):
    pair = ood_pair(wildcards)
    base, style = split_scorer_name(wildcards.scorer)
    info = OOD_SCORERS.entry(base).info
    return {
        "scorer": wildcards.scorer,
        "params": scorer_params(base, OOD),
        "fit_dir": embeddings_dir(wildcards),
        "fit_split": clustering_split(wildcards),
        "eval_split": OOD["eval_split"],
        "ood_dir": embeddings_dir(wildcards, pair["out"]["dataset"]),
        "ood_classes": pair["out"]["classes"],
        "assignments": cluster_assignments(wildcards) if info.get("labels") == "clusters" and not info.get("probe") else None,
        "probe": probe_file(wildcards, info["probe"]) if info.get("probe") else None,
        "adversarial_dir": attack_dir(wildcards, style) if style else None,
        "backbone": BACKBONES[wildcards.backbone],
        "bootstrap": OOD["bootstrap"],
        "negatives": negatives_side(wildcards),
        "run_info": {"dataset": wildcards.dataset, "backbone": wildcards.backbone, "ood": wildcards.ood,
                     "in": pair["in"], "out": describe_side(pair["out"])},
    }


def ood_probe_inputs(wildcards):
    fit = f"{embeddings_dir(wildcards)}/{clustering_split(wildcards)}"
    inputs = {"fit": f"{fit}.npy", "fit_meta": f"{fit}.meta.json"}
    if wildcards.source == "clusters":
        inputs["assignments"] = cluster_assignments(wildcards)
    return inputs


def ood_probe_params(wildcards):
    return {
        "source": wildcards.source,
        "fit_dir": embeddings_dir(wildcards),
        "fit_split": clustering_split(wildcards),
        "params": probe_training(OOD),
        "assignments": cluster_assignments(wildcards) if wildcards.source == "clusters" else None,
        "backbone": BACKBONES[wildcards.backbone],
    }


def ood_attack_inputs(wildcards):
    return {name: path for name, path in ood_sides(wildcards).items() if name != "id"}


def ood_attack_params(wildcards):
    pair, adversarial = ood_pair(wildcards), OOD["adversarial"]
    return {
        "backbone": BACKBONES[wildcards.backbone],
        "fit_dir": embeddings_dir(wildcards),
        "fit_split": clustering_split(wildcards),
        "ood_dataset": DATASETS[pair["out"]["dataset"]],
        "eval_split": OOD["eval_split"],
        "ood_dir": embeddings_dir(wildcards, pair["out"]["dataset"]),
        "ood_classes": pair["out"]["classes"],
        "tv_weight": adversarial["styles"][wildcards.style],
        **{key: adversarial[key] for key in ("steps", "lr", "n_images", "batch_size", "seed")},
    }


def diffusion_cluster_files(wildcards):
    """The clustering run a clusters-<method>-k<K> condition reads, and the embedding meta that proves which
    data it clustered."""
    kind, method, k = parse_condition(wildcards.cond)
    if kind != "clusters":
        return {}
    backbone = backbone_slug(DIFFUSION_BACKBONE["spec"])
    split = DATASETS[wildcards.dataset]["split"]
    return {
        "assignments": result(ClusteringRun(wildcards.dataset, backbone, method, k, DIFFUSION["clusters"]["seed"]),
                              "assignments.npy"),
        "embeddings_meta": result(Embeddings(wildcards.dataset, backbone), f"{split}.meta.json"),
    }


def diffusion_classifier_files(wildcards):
    """The data set's feature classifier, when diffusion.metrics.networks scores in it."""
    if "classifier" not in DIFFUSION["metrics"]["networks"]:
        return {}
    return {"classifier": result(DiffusionClassifier(wildcards.dataset), "metrics.json")}


def diffusion_run_params(wildcards):
    files = diffusion_cluster_files(wildcards)
    classifier = diffusion_classifier_files(wildcards).get("classifier")
    return {
        "dataset": DATASETS[wildcards.dataset],
        "condition": wildcards.cond,
        "params": DIFFUSION_PARAMS,
        "feature_backbone": DIFFUSION_BACKBONE,
        "seeds": [int(wildcards.seed)] if "seed" in wildcards.keys() else DIFFUSION["seeds"],
        "assignments": files.get("assignments"),
        "embeddings_meta": files.get("embeddings_meta"),
        "classifier_dir": classifier and os.path.dirname(classifier),
        "run_info": {"dataset": wildcards.dataset},
    }


def diffusion_run_files(filename):
    """Input function: `filename` of every diffusion run; with diffusion.clusters.upper_bound it waits for the
    bound's checkpoint to add K = bound."""

    def runs(wildcards):
        bound = None
        if DIFFUSION["clusters"]["upper_bound"]:
            backbone = backbone_slug(DIFFUSION_BACKBONE["spec"])
            bound = lambda dataset: upper_bound(dataset, backbone)
        return [result(run, filename) for run in diffusion_runs(config, bound)]

    return runs
