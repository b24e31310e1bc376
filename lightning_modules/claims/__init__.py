"""The claims stage: the papers' findings tested over a sweep's tables (ledger.py: the tests, the verdicts,
`tables/claims.parquet`). This module is what the Snakefile and the config check read: it imports nothing heavy."""

from __future__ import annotations


def _images(dataset: dict) -> dict:
    """What decides a dataset's images and labels, without its class imbalance and its evaluation-only coarse
    groups: an imbalanced variant and its balanced dataset are equal here."""
    return {key: value for key, value in dataset.items() if key not in ("imbalance", "coarse_groups")}


def dataset_roles(config: dict) -> dict:
    """What the findings need to know about each dataset of a (validated) config: which dataset an imbalanced one
    is a variant of (same source, split and classes without `imbalance`), which are marked easy or largest
    (`claims.easy_datasets`, `claims.largest_datasets`), the chance level of a second cluster's coarse class."""
    claims = config.get("claims") or {}
    datasets = config["datasets"]
    roles = {}
    for name, dataset in datasets.items():
        role = {"easy": name in claims.get("easy_datasets", []), "largest": name in claims.get("largest_datasets", [])}
        if dataset.get("imbalance"):
            role["imbalanced_of"] = next((other for other, entry in datasets.items()
                                          if other != name and _images(entry) == _images(dataset)), None)
        groups = dataset.get("coarse_groups")
        if groups:  # a random second cluster's coarse class is right with probability sum of squared group shares
            sizes = [len(members) for members in groups.values()]
            role["coarse_chance"] = sum((size / sum(sizes)) ** 2 for size in sizes)
        roles[name] = role
    return {"datasets": roles}


def claims_context(config: dict) -> dict:
    """The context the findings read, from a validated config: the datasets' roles and the backbone whose
    clusters condition the diffusion runs (C8 matches its clustering runs)."""
    from lightning_modules.naming import backbone_slug
    from lightning_modules.sweep import diffusion_backbone

    return {**dataset_roles(config), "diffusion_backbone": backbone_slug(diffusion_backbone(config)["spec"])}


def check_claims(config: dict) -> None:
    """The claims section names configured datasets."""
    from lightning_modules.config import known_datasets

    for key in ("easy_datasets", "largest_datasets"):
        known_datasets(config, (config.get("claims") or {}).get(key, []), f"claims.{key}")
