"""The Snakefile's input functions and file lists, as plain Python: `SweepFiles(config)` knows, for one validated
config, every file a rule reads and every setting it is run with. The rule files stay a list of stages
(workflow/rules/*.smk: `unpack(files.clustering_inputs)`, `files.log("cluster", ClusteringRun)`), and the tests
call the same functions the rules call. Paths come from the layout (lightning_modules.core.layout); nothing here
opens a result but the upper cluster bound, through the callable the Snakefile hands in (its checkpoint)."""

from __future__ import annotations

import os
from typing import Callable

from lightning_modules.analysis.claims import claims_context
from lightning_modules.clustering import METHODS, estimator_params
from lightning_modules.core import layout
from lightning_modules.core.checks import canonical
from lightning_modules.core.layout import (ClusterBound, ClusterFigures, ClusteringRun, DiffusionClassifier,
                                           DiffusionRun, EmbeddingMap, Embeddings, KnnGraph, OodAttack, OodProbe,
                                           Report, Selection)
from lightning_modules.core.naming import SPACE_SEPARATOR, backbone_slug, primary_backbone
from lightning_modules.diffusion import (classifier_settings, condition_pattern, diffusion_backbone, parse_condition,
                                         run_settings)
from lightning_modules.ood import (OOD_SCORERS, PROBE_LABELS, describe_side, ood_pairs, probe_training,
                                   scorer_negatives, scorer_params, split_scorer_name)
from lightning_modules.services.tracking import ROLE_TAG, default_tracking_uri
from lightning_modules.workflow.sweep import clustering_runs, diffusion_runs, ood_probes, ood_runs, space_backbones

# Jobs of seconds on a CPU (k-means runs; the OOD scores, self-distillation's training aside): on a cluster the
# slurm profile runs many of them in one allocation (its `group-components` for this group); local runs ignore
# groups
SMALL_JOBS = "small-cpu"
# the upper cluster bound -> diffusion chain is a sweep's longest: started first, its jobs overlap the many short
# clustering and OOD jobs instead of running after them (the demo's last minute was diffusion alone). What the chain
# waits on shares it (the embeddings, the kNN graphs, the clustering runs a diffusion condition reads), as does the
# selection that the figures and reports wait on: Snakemake's scheduler, which favours jobs with large inputs, ran
# these sub-second jobs late (the demo's upper bound started 57 s in, its digits-lt10 branch 196 s in, a selection
# waited 24 s behind another data set's runs)
LONG_CHAIN_PRIORITY = 10
# the store's first job runs before any other: the sweep's parent run starts with it (its duration is the sweep's),
# and without a priority Snakemake's scheduler, which favours jobs with large inputs, would start it last
FIRST_JOB_PRIORITY = 100


def wildcard_constraints() -> dict[str, str]:
    """The Snakefile's wildcard constraints: the layout's, with the fields that name plug-ins narrowed to the names
    their registries know."""
    return layout.wildcard_constraints({"cond": condition_pattern(), "source": "|".join(PROBE_LABELS.names())})


class SweepFiles:
    """The files and settings of one sweep. `upper_bound(dataset, backbone) -> int` reads the upper cluster bound of
    a dataset x backbone (in the Snakefile: through the bound's checkpoint, so only input functions may call what
    uses it); without it, K is never truncated at a bound."""

    def __init__(self, config: dict, upper_bound: Callable[[str, str], int] | None = None):
        self.config = config
        self.upper_bound = upper_bound
        self.results_dir = config["results_dir"]
        self.tracking_uri = config["tracking_uri"] or default_tracking_uri(self.results_dir)
        self.datasets = config["datasets"]
        self.backbones = {backbone_slug(backbone["spec"]): backbone for backbone in config["backbones"]}
        # every backbone something embeds with: the sweep's, and those only a multi-space method (TURTLE) reads
        self.embedded_backbones = {**{backbone_slug(b["spec"]): b for own in config["clustering"]["methods"].values()
                                      for space in space_backbones(own) for b in space}, **self.backbones}
        self.clustering = config["clustering"]
        self.ood = config["ood"]
        self.ood_pairs = ood_pairs(config)
        self.diffusion = config["diffusion"]
        self.diffusion_backbone = diffusion_backbone(config)
        # the clustering runs the clustering table lists; any other (the cluster-* OOD scorers' clustering) is a helper
        self.table_clusterings = set(clustering_runs(config, self.backbones))
        # GPUs a diffusion job asks the cluster for: its Lightning devices (0 where a run is configured for CPU)
        devices = self.diffusion["devices"]
        self.diffusion_gpus = devices if isinstance(devices, int) else 1
        # one job trains a condition's seeds in turn (diffusion.seeds_in_one_job): the seeds of its outputs
        self.one_job_seeds = self.diffusion["seeds"] if self.diffusion["seeds_in_one_job"] else None

    # ---- paths ----
    def results(self, path: str) -> str:
        """A path under the results folder (`path` may hold {wildcards})."""
        return os.path.join(self.results_dir, path)

    def result(self, record, name: str = "") -> str:
        """A file `name` of a layout record (or its folder) under the results folder."""
        return self.results(record.file(name) if name else record.folder)

    def output(self, kind: type[layout.Record], name: str = "") -> str:
        """A rule's output pattern: `name` in the folder of record kind `kind`, its fields as {wildcards}."""
        return self.results(kind.pattern(name))

    def log(self, rule: str, kind: type[layout.Record] | None = None, name: str = "") -> str:
        """A rule's log file under the results folder (layout.log_pattern)."""
        return self.results(layout.log_pattern(rule, kind, name))

    def sweep_reports(self) -> list[str]:
        """The stage reports a sweep ends with."""
        wanted = {"clustering": True, "ood": bool(self.ood_pairs), "diffusion": bool(self.diffusion["datasets"]),
                  "claims": True}
        return [self.result(Report(), f"{name}.html") for name, want in wanted.items() if want]

    # ---- embeddings, kNN graph, clustering ----
    def embeddings_dir(self, wildcards, dataset: str | None = None) -> str:
        """The (primary) backbone's embeddings of the wildcards' dataset (or of `dataset`)."""
        return self.result(Embeddings(dataset or wildcards.dataset, primary_backbone(wildcards.backbone)))

    def clustering_split(self, wildcards) -> str:
        return self.datasets[wildcards.dataset]["split"]

    def fit_embeddings(self, wildcards) -> str:
        """The embeddings a dataset x backbone is clustered (and OOD scorers fitted) on."""
        return f"{self.embeddings_dir(wildcards)}/{self.clustering_split(wildcards)}.npy"

    def knn_file(self, wildcards) -> str:
        graph = KnnGraph(wildcards.dataset, primary_backbone(wildcards.backbone))
        return self.result(graph, f"{self.clustering_split(wildcards)}.k{self.config['knn']['k']}.npy")

    def clustering_inputs(self, wildcards) -> dict:
        """Every method gets the kNN graph: heads train on it, and every run reports its kNN agreement."""
        split = self.clustering_split(wildcards)
        split_files = f"{self.embeddings_dir(wildcards)}/{split}"
        others = wildcards.backbone.split(SPACE_SEPARATOR)[1:]  # a multi-space setting's other backbones
        spaces = [self.result(Embeddings(wildcards.dataset, other), f"{split}.npy") for other in others]
        return {"embeddings": f"{split_files}.npy", "labels": f"{split_files}.labels.npy",
                "knn": self.knn_file(wildcards), "spaces": spaces}

    def clustering_role_tags(self, wildcards) -> dict:
        run = ClusteringRun(wildcards.dataset, wildcards.backbone, wildcards.method, int(wildcards.k),
                            int(wildcards.seed))
        return {} if run in self.table_clusterings else {ROLE_TAG: "helper"}

    def cluster_priority(self, wildcards) -> int:
        """LONG_CHAIN_PRIORITY for a run of a method and seed that diffusion conditions on (at any K: a few short
        runs more than it reads), 0 for the others."""
        clusters = self.diffusion.get("clusters") or {}
        read_by_diffusion = (wildcards.dataset in self.diffusion.get("datasets", [])
                             and wildcards.backbone == backbone_slug(self.diffusion_backbone["spec"])
                             and wildcards.method in clusters.get("methods", [])
                             and int(wildcards.seed) == clusters.get("seed"))
        return LONG_CHAIN_PRIORITY if read_by_diffusion else 0

    def cluster_group(self, wildcards) -> str | None:
        return SMALL_JOBS if METHODS.entry(wildcards.method).info.get("small") else None

    def method_params(self, wildcards) -> dict:
        return canonical(estimator_params(self.clustering["methods"][wildcards.method]))

    def sweep_clustering_runs(self) -> list[ClusteringRun]:
        """Every clustering run in the sweep, K truncated at the upper cluster bound when config asks for it (then
        it waits for the bound: call it from input functions only)."""
        bound = self.clustering["upper_bound"]
        bounded = bound.get("datasets", self.datasets)

        def limit(dataset, backbone):
            return self.upper_bound(dataset, backbone) if dataset in bounded else None

        truncate = bound["enabled"] and bound["truncate_k"] and self.upper_bound is not None
        return clustering_runs(self.config, self.backbones, limit if truncate else None)

    def clustering_run_files(self, filename: str) -> Callable:
        """Input function: `filename` of every clustering run in the sweep (sweep_clustering_runs)."""
        return lambda wildcards: [self.result(run, filename) for run in self.sweep_clustering_runs()]

    def setting_runs(self, filename: str) -> Callable:
        """Input function: `filename` of every clustering run of the wildcards' dataset x backbone."""
        def runs(wildcards):
            return [self.result(run, filename) for run in self.sweep_clustering_runs()
                    if run.setting == (wildcards.dataset, wildcards.backbone)]

        return runs

    def clustering_settings(self) -> list[tuple[str, str]]:
        """Every dataset x backbone that has clustering runs, in the grid's order."""
        return list(dict.fromkeys(run.setting for run in clustering_runs(self.config, self.backbones)))

    def selection_files(self) -> list[str]:
        """One label-free selection per dataset x backbone that has clustering runs."""
        return [self.result(Selection(*setting), "selection.json") for setting in self.clustering_settings()]

    def figure_folders(self) -> list[str]:
        """The figures of each dataset x backbone's selected clustering run."""
        return [self.result(ClusterFigures(*setting)) for setting in self.clustering_settings()]

    def map_file(self, wildcards) -> list[str] | str:
        """The 2-D map of the wildcards' clustered embeddings ([] without maps)."""
        if self.config["maps"]["method"] is None:
            return []
        record = EmbeddingMap(wildcards.dataset, primary_backbone(wildcards.backbone))
        return self.result(record, f"{self.clustering_split(wildcards)}.npy")

    def bound_files(self) -> list[str]:
        if not self.clustering["upper_bound"]["enabled"]:
            return []
        datasets = self.clustering["upper_bound"].get("datasets", self.datasets)
        return [self.result(ClusterBound(dataset, backbone), "bound.json") for dataset in datasets
                for backbone in self.backbones]

    # ---- OOD ----
    def ood_pair(self, wildcards) -> dict:
        pair = self.ood_pairs[wildcards.ood]
        if pair["in"] != wildcards.dataset:
            raise ValueError(f"OOD pair '{wildcards.ood}' has in-dataset '{pair['in']}', not '{wildcards.dataset}'")
        return pair

    def ood_sides(self, wildcards) -> dict:
        """Embedding files of the ID fit split, the ID eval split and the OOD eval split."""
        pair, split = self.ood_pair(wildcards), self.ood["eval_split"]
        ood_dir = self.embeddings_dir(wildcards, pair["out"]["dataset"])
        fit = f"{self.embeddings_dir(wildcards)}/{self.clustering_split(wildcards)}"
        return {"fit": f"{fit}.npy", "fit_meta": f"{fit}.meta.json", "id": f"{self.embeddings_dir(wildcards)}/{split}.npy",
                "ood": f"{ood_dir}/{split}.npy", "ood_meta": f"{ood_dir}/{split}.meta.json"}

    def cluster_assignments(self, wildcards) -> str:
        clusters = self.ood["clusters"]
        run = ClusteringRun(wildcards.dataset, wildcards.backbone, clusters["method"], clusters["k"], clusters["seed"])
        return self.result(run, "assignments.npy")

    def attack_dir(self, wildcards, style: str) -> str:
        return self.result(OodAttack(wildcards.dataset, wildcards.backbone, wildcards.ood, style))

    def probe_file(self, wildcards, source: str) -> str:
        return self.result(OodProbe(wildcards.dataset, wildcards.backbone, source), "probe.npz")

    def negatives_side(self, wildcards) -> dict | None:
        """`{dataset, dir, split}` of the shifted images a scorer trains against (`ood.negatives`), or None."""
        name = scorer_negatives(wildcards.scorer)
        if name is None:
            return None
        dataset = self.ood["negatives"][name]
        return {"dataset": dataset, "dir": self.embeddings_dir(wildcards, dataset), "split": self.datasets[dataset]["split"]}

    def ood_score_group(self, wildcards) -> str | None:
        return None if scorer_negatives(wildcards.scorer) else SMALL_JOBS

    def _scorer_reads(self, wildcards) -> tuple[dict, str | None]:
        """The wildcards' scorer's registry info and attack style."""
        base, style = split_scorer_name(wildcards.scorer)
        return OOD_SCORERS.entry(base).info, style

    def ood_inputs(self, wildcards) -> dict:
        info, style = self._scorer_reads(wildcards)
        inputs = self.ood_sides(wildcards)
        if info.get("probe"):
            inputs["probe"] = self.probe_file(wildcards, info["probe"])
        elif info.get("labels") == "clusters":
            inputs["assignments"] = self.cluster_assignments(wildcards)
        if style:
            inputs["attack"] = f"{self.attack_dir(wildcards, style)}/attack.json"
        negatives = self.negatives_side(wildcards)
        if negatives:
            for split in (negatives["split"], self.ood["eval_split"]):
                inputs[f"negatives_{split}"] = f"{negatives['dir']}/{split}.npy"
        return inputs

    def ood_run_params(self, wildcards) -> dict:
        pair = self.ood_pair(wildcards)
        info, style = self._scorer_reads(wildcards)
        reads_clusters = info.get("labels") == "clusters" and not info.get("probe")
        return canonical({
            "scorer": wildcards.scorer,
            "params": scorer_params(split_scorer_name(wildcards.scorer)[0], self.ood),
            "fit_dir": self.embeddings_dir(wildcards),
            "fit_split": self.clustering_split(wildcards),
            "eval_split": self.ood["eval_split"],
            "ood_dir": self.embeddings_dir(wildcards, pair["out"]["dataset"]),
            "ood_classes": pair["out"]["classes"],
            "assignments": self.cluster_assignments(wildcards) if reads_clusters else None,
            "probe": self.probe_file(wildcards, info["probe"]) if info.get("probe") else None,
            "adversarial_dir": self.attack_dir(wildcards, style) if style else None,
            "backbone": self.backbones[wildcards.backbone],
            "bootstrap": self.ood["bootstrap"],
            "negatives": self.negatives_side(wildcards),
            "run_info": {"dataset": wildcards.dataset, "backbone": wildcards.backbone, "ood": wildcards.ood,
                         "in": pair["in"], "out": describe_side(pair["out"])},
        })

    def ood_probe_inputs(self, wildcards) -> dict:
        fit = f"{self.embeddings_dir(wildcards)}/{self.clustering_split(wildcards)}"
        inputs = {"fit": f"{fit}.npy", "fit_meta": f"{fit}.meta.json"}
        if PROBE_LABELS.entry(wildcards.source).info.get("assignments"):
            inputs["assignments"] = self.cluster_assignments(wildcards)
        return inputs

    def ood_probe_params(self, wildcards) -> dict:
        return canonical({
            "source": wildcards.source,
            "fit_dir": self.embeddings_dir(wildcards),
            "fit_split": self.clustering_split(wildcards),
            "params": probe_training(self.ood),
            "assignments": self.ood_probe_inputs(wildcards).get("assignments"),
            "backbone": self.backbones[wildcards.backbone],
        })

    def ood_attack_inputs(self, wildcards) -> dict:
        return {name: path for name, path in self.ood_sides(wildcards).items() if name != "id"}

    def ood_attack_params(self, wildcards) -> dict:
        pair, adversarial = self.ood_pair(wildcards), self.ood["adversarial"]
        return canonical({
            "backbone": self.backbones[wildcards.backbone],
            "fit_dir": self.embeddings_dir(wildcards),
            "fit_split": self.clustering_split(wildcards),
            "ood_dataset": self.datasets[pair["out"]["dataset"]],
            "eval_split": self.ood["eval_split"],
            "ood_dir": self.embeddings_dir(wildcards, pair["out"]["dataset"]),
            "ood_classes": pair["out"]["classes"],
            "tv_weight": adversarial["styles"][wildcards.style],
            **{key: adversarial[key] for key in ("steps", "lr", "n_images", "batch_size", "seed")},
        })

    def ood_run_files(self, filename: str) -> list[str]:
        return [self.result(run, filename) for run in ood_runs(self.config, self.backbones)]

    def ood_probe_files(self, filename: str) -> list[str]:
        return [self.result(probe, filename) for probe in ood_probes(self.config, self.backbones)]

    # ---- diffusion ----
    def diffusion_cluster_files(self, wildcards) -> dict:
        """The clustering run a clusters-<method>-k<K> condition reads, and the embedding meta that proves which
        data it clustered."""
        kind, method, k = parse_condition(wildcards.cond)
        if kind != "clusters":
            return {}
        backbone = backbone_slug(self.diffusion_backbone["spec"])
        split = self.datasets[wildcards.dataset]["split"]
        run = ClusteringRun(wildcards.dataset, backbone, method, k, self.diffusion["clusters"]["seed"])
        return {"assignments": self.result(run, "assignments.npy"),
                "embeddings_meta": self.result(Embeddings(wildcards.dataset, backbone), f"{split}.meta.json")}

    def diffusion_classifier_files(self, wildcards) -> dict:
        """The data set's feature classifier, when diffusion.metrics.networks scores in it."""
        if "classifier" not in self.diffusion["metrics"]["networks"]:
            return {}
        return {"classifier": self.result(DiffusionClassifier(wildcards.dataset), "metrics.json")}

    def diffusion_run_params(self, wildcards) -> dict:
        cluster_files = self.diffusion_cluster_files(wildcards)
        classifier = self.diffusion_classifier_files(wildcards).get("classifier")
        return canonical({
            "dataset": self.datasets[wildcards.dataset],
            "condition": wildcards.cond,
            "params": run_settings(self.diffusion),  # what every diffusion run is trained, sampled and scored with
            "feature_backbone": self.diffusion_backbone,
            "seeds": [int(wildcards.seed)] if "seed" in wildcards.keys() else self.diffusion["seeds"],
            "assignments": cluster_files.get("assignments"),
            "embeddings_meta": cluster_files.get("embeddings_meta"),
            "classifier_dir": classifier and os.path.dirname(classifier),
            "run_info": {"dataset": wildcards.dataset},
        })

    def diffusion_classifier_params(self) -> dict:
        """The feature classifier's settings: a diffusion setting outside them must not retrain it."""
        return canonical(classifier_settings(self.diffusion))

    def diffusion_outputs(self, name: str) -> str | list[str]:
        """`name` of the run at wildcard seed or, with seeds in one job, of every configured seed (the wildcards
        dataset and cond kept)."""
        if self.one_job_seeds is None:
            return self.output(DiffusionRun, name)
        return [self.output(DiffusionRun, name).replace("{seed}", str(seed)) for seed in self.one_job_seeds]

    def diffusion_log(self) -> str:
        if self.one_job_seeds is None:
            return self.log("diffusion", DiffusionRun)
        return self.log("diffusion", name="{dataset}/{cond}/seeds")

    def diffusion_run_files(self, filename: str) -> Callable:
        """Input function: `filename` of every diffusion run; with diffusion.clusters.upper_bound it waits for the
        bound to add K = bound."""

        def runs(wildcards):
            bound = None
            if self.diffusion["clusters"]["upper_bound"] and self.upper_bound is not None:
                backbone = backbone_slug(self.diffusion_backbone["spec"])
                bound = lambda dataset: self.upper_bound(dataset, backbone)  # noqa: E731
            return [self.result(run, filename) for run in diffusion_runs(self.config, bound)]

        return runs

    # ---- claims ----
    def claims_context(self) -> dict:
        return canonical(claims_context(self.config))
