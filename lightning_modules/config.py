"""Config validation: the JSON schema (config/schema.yaml, through snakemake.utils.validate) and the
checks a schema cannot express (registry names, K against dataset sizes). Every failure is one line that
names the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

from lightning_modules.registry import UnknownNameError, did_you_mean


class ConfigError(ValueError):
    pass


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
    "pattern": "{where} = {instance!r} is not a valid name; allowed: lower-case letters, digits, '.', '_', '-'",
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


def check_registries_and_sizes(config: dict) -> None:
    """Names must be registered, dataset options known to their loader and data roots present; K must fit
    every dataset whose size is known without loading it. Backbones become `{spec, options…}` dicts."""
    from lightning_modules.backbones import BACKBONES, split_spec
    from lightning_modules.clustering import METHODS
    from lightning_modules.data import DATASETS, check_options, dataset_options, known_size
    from lightning_modules.naming import backbone_slug

    def registered(registry, name: str, key: str):
        try:
            return registry.entry(name)
        except UnknownNameError as error:
            raise ConfigError(f"config error: {key}: {error}") from None

    def known_datasets(names: list, key: str) -> None:
        for name in names:
            if name not in config["datasets"]:
                raise ConfigError(f"config error: {key} names '{name}'{did_you_mean(name, config['datasets'])}; "
                                  f"allowed: {', '.join(config['datasets'])}")

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
    config["backbones"] = [{"spec": b} if isinstance(b, str) else b for b in config["backbones"]]
    slugs: dict[str, str] = {}
    for index, backbone in enumerate(config["backbones"]):
        spec = backbone["spec"]
        registered(BACKBONES, split_spec(spec)[0], f"backbones[{index}]")
        slug = backbone_slug(spec)
        if slug in slugs:
            raise ConfigError(f"config error: backbones '{slugs[slug]}' and '{spec}' share the name '{slug}'")
        slugs[slug] = spec
    for method, own in config["clustering"]["methods"].items():
        registered(METHODS, method, f"clustering.methods.{method}")
        known_datasets(own.get("datasets", []), f"clustering.methods.{method}.datasets")
    known_datasets(config["clustering"]["upper_bound"].get("datasets", []), "clustering.upper_bound.datasets")

    methods = config["clustering"]["methods"]
    grids = {"clustering.k": config["clustering"]["k"]}
    grids.update({f"clustering.methods.{m}.k": own["k"] for m, own in methods.items() if "k" in own})
    bound_k = config["clustering"]["upper_bound"].get("k")
    if config["clustering"]["upper_bound"]["enabled"] and bound_k:
        grids["clustering.upper_bound.k"] = [bound_k]
    for name, dataset in config["datasets"].items():
        size = known_size(dataset["source"], dataset["split"])
        if size is None:
            continue
        for key, ks in grids.items():
            too_large = [k for k in ks if k > size]
            if too_large:
                raise ConfigError(
                    f"config error: {key} = {too_large[0]} is larger than dataset '{name}' "
                    f"({size} samples in split '{dataset['split']}'); allowed: 2..{size}"
                )
        if config["knn"]["k"] >= size:
            raise ConfigError(
                f"config error: knn.k = {config['knn']['k']} leaves no neighbour to exclude in dataset '{name}' "
                f"({size} samples); allowed: 1..{size - 1}"
            )


def validate_config(config: dict, schema_path: str | Path) -> dict:
    validate_schema(config, schema_path)
    check_registries_and_sizes(config)
    return config
