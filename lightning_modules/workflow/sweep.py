"""The sweep's grid, from config: which runs exist. Used by the Snakefile's input functions (workflow.files) and
by tests. Imports the stages' registries only, nothing heavy."""

from __future__ import annotations

from functools import partial
from typing import Callable

from lightning_modules.backbones import BACKBONES, split_spec
from lightning_modules.core.layout import ClusteringRun, DiffusionRun, OodProbe, OodRun
from lightning_modules.core.naming import primary_backbone, space_slug
from lightning_modules.diffusion import cluster_condition
from lightning_modules.ood import OOD_SCORERS, ood_pairs, split_scorer_name


def method_grid(clustering: dict, method: str) -> tuple[list[int], list[int]]:
    """A method's K grid and seeds: its own where config gives them, else the sweep's."""
    own = clustering["methods"][method]
    return own.get("k", clustering["k"]), own.get("seeds", clustering["seeds"])


def space_backbones(method_config: dict) -> list[list[dict]]:
    """A multi-space method's extra settings (`spaces: [[a, b], ...]`), each a list of backbone entries (as
    config.normalise_backbones wrote them)."""
    return method_config.get("spaces") or []


def clustering_runs(config: dict, backbones, bound: Callable[[str, str], int] | None = None) -> list[ClusteringRun]:
    """Every clustering run of the sweep; a multi-space setting's backbone is its backbones joined by `+`
    (e.g. `pixels+random-256`).

    With `bound` (dataset, backbone -> upper cluster bound, or None for no bound), K above the bound is
    left out (a multi-space setting uses its first backbone's bound).
    """
    clustering = config["clustering"]
    runs = []
    for dataset in config["datasets"]:
        for method, own in clustering["methods"].items():
            if dataset not in own.get("datasets", config["datasets"]):
                continue
            ks, seeds = method_grid(clustering, method)
            settings = list(backbones) + [space_slug(space) for space in space_backbones(own)]
            for backbone in settings:
                limit = bound(dataset, primary_backbone(backbone)) if bound else None
                runs += [ClusteringRun(dataset, backbone, method, k, seed) for k in ks if limit is None or k <= limit for seed in seeds]
    return runs


def ood_scorer_names(config: dict) -> list[str]:
    """The scorers (`<scorer>-<negatives>` for each of `ood.negatives` where the scorer trains
    on negatives), then `<scorer>-adv-<style>` for each attacked scorer and attack style."""
    ood = config.get("ood") or {}
    adversarial = ood.get("adversarial") or {}
    negatives = list((ood.get("negatives") or {}))
    names = []
    for scorer in ood.get("scorers", []):
        takes_negatives = scorer in OOD_SCORERS.names() and OOD_SCORERS.entry(scorer).info.get("negatives")
        names += [f"{scorer}-{negative}" for negative in negatives] if takes_negatives else [scorer]
    return names + [f"{scorer}-adv-{style}" for scorer in adversarial.get("scorers", [])
                    for style in adversarial.get("styles", {})]


def scorer_applies(scorer: str, backbone_spec: str) -> bool:
    """Text-based scorers (zeroshot-msp) run only on backbones with a text tower."""
    if not OOD_SCORERS.entry(split_scorer_name(scorer)[0]).info.get("text"):
        return True
    return bool(BACKBONES.entry(split_spec(backbone_spec)[0]).info.get("text_tower"))


def ood_runs(config: dict, backbones: dict[str, dict]) -> list[OodRun]:
    """Every OOD run of the sweep, on its pair's in-dataset (`backbones`: slug -> config entry)."""
    return [OodRun(pair["in"], slug, name, scorer) for name, pair in ood_pairs(config).items()
            for slug, backbone in backbones.items() for scorer in ood_scorer_names(config)
            if scorer_applies(scorer, backbone["spec"])]


def ood_probes(config: dict, backbones: dict[str, dict]) -> list[OodProbe]:
    """Every shared linear probe the sweep's scorers read."""
    probes = []
    for pair in ood_pairs(config).values():
        for slug, backbone in backbones.items():
            for scorer in ood_scorer_names(config):
                source = OOD_SCORERS.entry(split_scorer_name(scorer)[0]).info.get("probe")
                probe = source and OodProbe(pair["in"], slug, source)
                if probe and scorer_applies(scorer, backbone["spec"]) and probe not in probes:
                    probes.append(probe)
    return probes


def diffusion_conditions(config: dict, dataset: str, backbone_bound: Callable[[str], int | None] | None = None) -> list[str]:
    """The conditions of one dataset's diffusion runs: `diffusion.conditions`, then `clusters-<method>-k<K>` for
    each of `diffusion.clusters.methods` at every K of `diffusion.clusters.k` (default: the method's grid), and
    at the upper cluster bound's K
    (`backbone_bound(dataset)`, when asked for)."""
    diffusion, clustering = config.get("diffusion") or {}, config["clustering"]
    conditions = list(diffusion.get("conditions", []))
    clusters = diffusion.get("clusters") or {}
    bound = backbone_bound(dataset) if backbone_bound and clusters.get("upper_bound") else None
    for method in clusters.get("methods", []):
        ks = list(clusters.get("k") or method_grid(clustering, method)[0]) + ([bound] if bound else [])
        conditions += [name for name in map(partial(cluster_condition, method), ks) if name not in conditions]
    return conditions


def diffusion_runs(config: dict, backbone_bound: Callable[[str], int | None] | None = None) -> list[DiffusionRun]:
    """Every diffusion run of the sweep."""
    diffusion = config.get("diffusion") or {}
    return [DiffusionRun(dataset, cond, seed) for dataset in diffusion.get("datasets", [])
            for cond in diffusion_conditions(config, dataset, backbone_bound) for seed in diffusion.get("seeds", [0])]


def job_resources(config: dict, rule: str) -> dict:
    """The `mem_mb` / `runtime` a rule's jobs ask SLURM for: `resources.<rule>` of a validated config (the schema
    holds the defaults)."""
    return dict(config["resources"].get(rule) or {})
