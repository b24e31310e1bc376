"""The sweep's grid, from config: which runs exist. Used by the Snakefile (so it stays declarative) and by
tests. Imports nothing heavy."""

from __future__ import annotations

from typing import Callable

from lightning_modules.naming import slugify


def method_grid(clustering: dict, method: str) -> tuple[list[int], list[int]]:
    """A method's K grid and seeds: its own where config gives them, else the sweep's."""
    own = clustering["methods"][method]
    return own.get("k", clustering["k"]), own.get("seeds", clustering["seeds"])


def clustering_run_dirs(config: dict, backbones, bound: Callable[[str, str], int] | None = None) -> list[str]:
    """`{dataset}/{backbone}/clusters/{method}/k{k}/seed{seed}` for every run of the sweep.

    With `bound` (dataset, backbone -> upper cluster bound, or None for no bound), K above the bound is
    left out.
    """
    clustering = config["clustering"]
    runs = []
    for dataset in config["datasets"]:
        for backbone in backbones:
            limit = bound(dataset, backbone) if bound else None
            for method, own in clustering["methods"].items():
                if dataset not in own.get("datasets", config["datasets"]):
                    continue
                ks, seeds = method_grid(clustering, method)
                runs += [f"{dataset}/{backbone}/clusters/{method}/k{k}/seed{seed}"
                         for k in ks if limit is None or k <= limit for seed in seeds]
    return runs


def ood_side(side) -> dict:
    """An OOD pair's `out` (or `in`): a dataset name, or `{dataset, classes}` -> `{dataset, classes}`."""
    return {"dataset": side, "classes": None} if isinstance(side, str) else {"classes": None, **side}


def describe_side(side: dict) -> str:
    """`digits` or `digits{5,6,7,8,9}`: how tables name one side of a pair."""
    classes = side.get("classes")
    return side["dataset"] + ("{" + ",".join(map(str, classes)) + "}" if classes else "")


def ood_pairs(config: dict) -> dict[str, dict]:
    """Pair name -> `{in, out: {dataset, classes}}`, in config order. A pair without a `name` gets
    `<in>-vs-<out dataset>[-<classes>]`."""
    pairs = {}
    for pair in (config.get("ood") or {}).get("pairs", []):
        out = ood_side(pair["out"])
        default = f"{pair['in']}-vs-{out['dataset']}" + ("-" + "-".join(map(str, out["classes"])) if out["classes"] else "")
        pairs[pair.get("name") or slugify(default)] = {"in": pair["in"], "out": out}
    return pairs


def ood_scorer_names(config: dict) -> list[str]:
    """The scorers, then `<scorer>-adv-<style>` for each attacked scorer and attack style."""
    ood = config.get("ood") or {}
    adversarial = ood.get("adversarial") or {}
    return list(ood.get("scorers", [])) + [f"{scorer}-adv-{style}" for scorer in adversarial.get("scorers", [])
                                           for style in adversarial.get("styles", {})]


def ood_run_dirs(config: dict, backbones) -> list[str]:
    """`{in dataset}/{backbone}/ood/{pair}/{scorer}` for every OOD run of the sweep."""
    return [f"{pair['in']}/{backbone}/ood/{name}/{scorer}" for name, pair in ood_pairs(config).items()
            for backbone in backbones for scorer in ood_scorer_names(config)]
