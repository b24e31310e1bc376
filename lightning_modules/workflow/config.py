"""Config validation, assembled: the JSON schema (config/schema.yaml, through snakemake.utils.validate: the only
place of the defaults), backbone entries normalised once, then the checks a schema cannot express — the data and
backbones here, each stage's own section by its `checks.py` (clustering, ood, diffusion) and the claims'. Every
failure is one line that names the key and what is allowed (core.checks.ConfigError)."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from lightning_modules.analysis.claims import check_claims
from lightning_modules.clustering import METHODS, SELECTION_CRITERIA
from lightning_modules.clustering.checks import check_clustering
from lightning_modules.core.checks import ConfigError, registered, validate_schema
from lightning_modules.core.project import SCHEMA_FILE
from lightning_modules.core.registry import did_you_mean
from lightning_modules.diffusion import FEATURE_NETWORKS
from lightning_modules.diffusion.checks import check_diffusion
from lightning_modules.ood.checks import check_ood


def check_data_and_backbones(config: dict) -> None:
    """Datasets: registered sources and splits, options their loader knows, data roots present; backbones:
    registered, with distinct names; the kNN graph's settings against every dataset whose size is known."""
    from lightning_modules.backbones import BACKBONES, split_spec
    from lightning_modules.data import DATASETS, check_options, dataset_options, known_size
    from lightning_modules.core.naming import backbone_slug

    missing_roots = []
    for name, dataset in config["datasets"].items():
        entry = registered(DATASETS, dataset["source"], f"datasets.{name}.source")
        splits = entry.info.get("splits")
        if splits is not None and dataset["split"] not in splits:
            raise ConfigError(
                f"config error: datasets.{name}.split = '{dataset['split']}'"
                f"{did_you_mean(dataset['split'], splits)}; allowed: {', '.join(splits)}"
            )
        try:
            check_options(dataset["source"], dataset_options(dataset), key_prefix=f"datasets.{name}.")
        except TypeError as error:
            raise ConfigError(f"config error: {error}") from None
        if entry.info.get("needs_root"):
            if "root" not in dataset:
                raise ConfigError(f"config error: datasets.{name}.root is required for source '{dataset['source']}'")
            if not Path(dataset["root"]).expanduser().exists():
                missing_roots.append(f"datasets.{name}.root = {dataset['root']}")
    if missing_roots:
        raise ConfigError(f"config error: data not found: {'; '.join(missing_roots)} (download the data sets "
                          f"there, or point root at them)")
    slugs: dict[str, str] = {}
    for index, backbone in enumerate(config["backbones"]):
        spec = backbone["spec"]
        registered(BACKBONES, split_spec(spec)[0], f"backbones[{index}]")
        slug = backbone_slug(spec)
        if slug in slugs:
            raise ConfigError(f"config error: backbones '{slugs[slug]}' and '{spec}' share the name '{slug}'")
        slugs[slug] = spec
    for section in ("knn", "ood.knn"):
        search = config["knn"] if section == "knn" else (config.get("ood") or {}).get("knn", {})
        if search.get("nlist") and search.get("nprobe") and search["nprobe"] > search["nlist"]:
            raise ConfigError(f"config error: {section}.nprobe = {search['nprobe']} is larger than {section}.nlist = "
                              f"{search['nlist']}; allowed: 1..{search['nlist']} (the cells visited per query)")
    for name, dataset in config["datasets"].items():
        size = known_size(dataset["source"], dataset["split"])
        if size is None:
            continue
        nlist = config["knn"].get("nlist")
        if config["knn"]["index"] == "ivf" and nlist and nlist > size:
            raise ConfigError(f"config error: knn.nlist = {nlist} cells cannot be trained on dataset '{name}' "
                              f"({size} samples); use a smaller knn.nlist or knn.index: exact")
        if config["knn"]["k"] >= size:
            raise ConfigError(
                f"config error: knn.k = {config['knn']['k']} leaves no neighbour to exclude in dataset '{name}' "
                f"({size} samples); allowed: 1..{size - 1}"
            )


def _config_paths(config: dict):
    """(key, path) of every file or folder the config points at: dataset files and backbone weights."""
    from lightning_modules.data import FILE_OPTIONS

    for name, dataset in config["datasets"].items():
        for option in FILE_OPTIONS:
            if option in dataset:
                yield f"datasets.{name}.{option}", str(dataset[option]).replace("{split}", dataset.get("split", "all"))
    for index, backbone in enumerate(config["backbones"]):
        if backbone.get("weights"):
            yield f"backbones[{index}].weights", backbone["weights"]


def check_paths(config: dict) -> None:
    """With `data_roots`, every path the config points at must resolve (symlinks and `..` followed) inside
    one of them."""
    if not config.get("data_roots"):
        return
    roots = [Path(root).expanduser().resolve() for root in config["data_roots"]]
    for key, path in _config_paths(config):
        resolved = Path(path).expanduser().resolve()
        if not any(resolved.is_relative_to(root) for root in roots):
            raise ConfigError(f"config error: {key} = {path} resolves to {resolved}, outside data_roots "
                              f"({', '.join(map(str, roots))}); move it there or add its folder to data_roots")


def normalise_backbones(config: dict) -> None:
    """A backbone entry may be written as its spec alone: from here on every one (the sweep's and those of
    multi-space methods) is `{spec, ...}`."""
    def entry(backbone):
        return {"spec": backbone} if isinstance(backbone, str) else backbone

    config["backbones"] = [entry(b) for b in config["backbones"]]
    for own in config["clustering"]["methods"].values():
        if own.get("spaces"):
            own["spaces"] = [[entry(b) for b in space] for space in own["spaces"]]


@functools.cache
def assembled_schema(schema_path: str | Path = SCHEMA_FILE) -> dict:
    """The schema file with what the registries declare filled in: every clustering method's settings (its
    SETTINGS, on the settings group of `$defs` its SETTINGS_BASE names), the feature networks' and the selection
    criteria's names. Read-only:
    validation copies defaults out of it."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    groups, methods = schema["$defs"], {}
    for name in METHODS.names():
        declared = METHODS.entry(name).declared
        base = groups[declared["SETTINGS_BASE"]] if "SETTINGS_BASE" in declared else {}
        methods[name] = {"type": "object", "additionalProperties": False, "default": {},
                         "properties": {**base, **declared.get("SETTINGS", {})}}
    groups["methods"] = methods
    schema["properties"]["clustering"]["properties"]["methods"]["properties"] = {
        name: {"$ref": f"#/$defs/methods/{name}"} for name in methods}
    networks = schema["properties"]["diffusion"]["properties"]["metrics"]["properties"]["networks"]
    networks["items"] = {"enum": FEATURE_NETWORKS.names()}
    schema["properties"]["clustering"]["properties"]["selection_criterion"]["enum"] = SELECTION_CRITERIA.names()
    return schema


def validate_config(config: dict, schema_path: str | Path = SCHEMA_FILE) -> dict:
    validate_schema(config, assembled_schema(schema_path))
    normalise_backbones(config)
    for check in (check_data_and_backbones, check_paths, check_clustering, check_ood, check_diffusion, check_claims):
        check(config)
    return config
