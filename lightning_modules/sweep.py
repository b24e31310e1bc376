"""The sweep's grid, from config: which runs exist. Used by the Snakefile (so it stays declarative) and by
tests. Imports nothing heavy."""

from __future__ import annotations

from typing import Callable


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
