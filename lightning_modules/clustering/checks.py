"""The clustering section's checks beyond the schema (config.validate_config runs them): registered methods
on configured datasets, multi-space settings that start from a configured backbone, and every K of the grid
against the datasets whose size is known."""

from __future__ import annotations

from lightning_modules.core.checks import ConfigError, check_k, known_datasets, registered


def check_clustering(config: dict) -> None:
    from lightning_modules.backbones import BACKBONES, split_spec
    from lightning_modules.clustering import METHODS
    from lightning_modules.data import known_size
    from lightning_modules.core.naming import backbone_slug

    clustering = config["clustering"]
    configured = {backbone_slug(b["spec"]): b["spec"] for b in config["backbones"]}
    for method, own in clustering["methods"].items():
        registered(METHODS, method, f"clustering.methods.{method}")
        known_datasets(config, own.get("datasets", []), f"clustering.methods.{method}.datasets")
        for i, space in enumerate(own.get("spaces") or []):
            specs = [b["spec"] for b in space]
            for j, spec in enumerate(specs):
                registered(BACKBONES, split_spec(spec)[0], f"clustering.methods.{method}.spaces[{i}][{j}]")
            if specs[0] not in configured.values() and specs[0] not in configured:
                raise ConfigError(f"config error: clustering.methods.{method}.spaces[{i}] starts with '{specs[0]}', "
                                  f"which is not in backbones; the first backbone of a space must be a configured "
                                  f"one (its kNN graph and labels measure the run): "
                                  f"{', '.join(configured.values())}")
            if len(set(map(backbone_slug, specs))) != len(specs):
                raise ConfigError(f"config error: clustering.methods.{method}.spaces[{i}] repeats a backbone")
    known_datasets(config, clustering["upper_bound"].get("datasets", []), "clustering.upper_bound.datasets")

    grids = {"clustering.k": clustering["k"]}
    grids.update({f"clustering.methods.{m}.k": own["k"] for m, own in clustering["methods"].items() if "k" in own})
    bound_k = clustering["upper_bound"].get("k")
    if clustering["upper_bound"]["enabled"] and bound_k:
        grids["clustering.upper_bound.k"] = [bound_k]
    for name, dataset in config["datasets"].items():
        size = known_size(dataset["source"], dataset["split"])
        for key, ks in grids.items():
            for k in ks:
                check_k(key, k, name, size, dataset["split"])
