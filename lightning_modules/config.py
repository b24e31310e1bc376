"""Config validation: the JSON schema (config/schema.yaml, through snakemake.utils.validate: the only place
of the defaults), backbone entries normalised once, then the checks a schema cannot express — the data and
backbones here, each stage's own section by its `checks.py` (clustering, ood, diffusion) and the claims'. Every
failure is one line that names the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

from lightning_modules.registry import UnknownNameError, did_you_mean


class ConfigError(ValueError):
    pass


def canonical(value):
    """A config value with every mapping's keys sorted, recursively (lists keep their order): what a rule's params
    carry. Snakemake compares params by their repr, so without this a config whose keys are reordered (a YAML
    formatter, a dump with sort_keys) would rerun every job."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def _key_path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _allowed_keys(schema: dict) -> list[str]:
    return sorted(schema.get("properties", {}))


_MESSAGES = {  # jsonschema keyword -> one line naming the key and what is allowed
    "required": "{where}: {message}",
    "minimum": "{where} = {instance!r} is too small; allowed: values >= {expected}",
    "exclusiveMinimum": "{where} = {instance!r} is too small; allowed: values > {expected}",
    "maximum": "{where} = {instance!r} is too large; allowed: values <= {expected}",
    "minItems": "{where} is empty; give at least {expected} value(s)",
    "minProperties": "{where} is empty; give at least {expected} entry",
    "type": "{where} = {instance!r} has the wrong type; allowed: {expected}",
    "pattern": "{where} = {instance!r} is not a valid name; allowed: lower-case letters, digits, '.', '_', '-', "
               "starting with a letter or digit",
}


def describe_schema_error(error) -> str:
    """A jsonschema ValidationError as one line naming the key and what is allowed."""
    where = _key_path(error.absolute_path)
    kind, expected, instance = error.validator, error.validator_value, error.instance
    if kind in ("oneOf", "anyOf") and error.context:
        from jsonschema.exceptions import best_match

        # the alternative of the same type as the value says most (an object's unknown key, say)
        same_type = [e for e in error.context if e.validator != "type"] or list(error.context)
        return describe_schema_error(best_match(same_type))
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = _allowed_keys(error.schema)
        key = next((key for key in instance if key not in allowed), "?")
        prefix = f"{where}." if error.absolute_path else ""
        return f"unknown key '{prefix}{key}'{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}"
    if kind == "uniqueItems":
        repeated = [item for index, item in enumerate(instance) if item in instance[:index]]
        return f"{where} lists {', '.join(map(repr, repeated))} more than once; values must be unique"
    if kind == "enum":
        return f"{where} = {instance!r}{did_you_mean(instance, expected)}; allowed: {', '.join(map(str, expected))}"
    template = _MESSAGES.get(kind, "{where}: {message}")
    return template.format(where=where, instance=instance, expected=expected, message=error.message)


def validate_schema(config: dict, schema_path: str | Path) -> None:
    """Validate against the schema (filling in its defaults) with snakemake.utils.validate."""
    import jsonschema
    from snakemake.utils import validate

    try:
        validate(config, str(Path(schema_path).resolve()), set_default=True)
    except Exception as error:  # snakemake raises a WorkflowError while handling the jsonschema error
        cause = error.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        raise ConfigError(f"config error: {describe_schema_error(cause)}") from None


def registered(registry, name: str, key: str):
    """`registry`'s entry of `name`; an unknown name is one config error naming `key` and the allowed names."""
    try:
        return registry.entry(name)
    except UnknownNameError as error:
        raise ConfigError(f"config error: {key}: {error}") from None


def known_datasets(config: dict, names: list, key: str) -> None:
    for name in names:
        if name not in config["datasets"]:
            raise ConfigError(f"config error: {key} names '{name}'{did_you_mean(name, config['datasets'])}; "
                              f"allowed: {', '.join(config['datasets'])}")


def check_data_and_backbones(config: dict) -> None:
    """Datasets: registered sources and splits, options their loader knows, data roots present; backbones:
    registered, with distinct names; the kNN graph's settings against every dataset whose size is known."""
    from lightning_modules.backbones import BACKBONES, split_spec
    from lightning_modules.data import DATASETS, check_options, dataset_options, known_size
    from lightning_modules.naming import backbone_slug

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


def check_k(key: str, k: int, dataset: str | None = None, size: int | None = None, split: str | None = None) -> None:
    """A number of clusters must be 2..N: one cluster partitions nothing, and more than N leaves some empty."""
    if k < 2:
        raise ConfigError(f"config error: {key} = {k} clusters partition nothing; allowed: 2.." + (f"{size}" if size else "N"))
    if size is not None and k > size:
        raise ConfigError(f"config error: {key} = {k} is larger than dataset '{dataset}' ({size} samples in split "
                          f"'{split}'); allowed: 2..{size}")


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


def validate_config(config: dict, schema_path: str | Path) -> dict:
    validate_schema(config, schema_path)
    normalise_backbones(config)
    from lightning_modules.claims import check_claims
    from lightning_modules.clustering.checks import check_clustering
    from lightning_modules.diffusion.checks import check_diffusion
    from lightning_modules.ood.checks import check_ood

    for check in (check_data_and_backbones, check_paths, check_clustering, check_ood, check_diffusion, check_claims):
        check(config)
    return config


def results_dir_of(config_path: str | Path) -> str:
    """The results folder of a sweep's config file (its `results_dir`, or the schema's default)."""
    from lightning_modules.contracts import read_config_file

    schema = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"
    return validate_config(read_config_file(config_path), schema)["results_dir"]
