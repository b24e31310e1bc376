"""The config's shared checking primitives, below every stage's checks: the one error a config mistake raises
(`ConfigError`, one line naming the key and what is allowed), the schema's validation (config/schema.yaml, the only
place of the defaults), and the checks several stages share (registered names, dataset names, a number of
clusters). The checks of each stage sit in its package; lightning_modules.workflow.config assembles them."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

from lightning_modules.core.project import SCHEMA_FILE
from lightning_modules.core.registry import UnknownNameError, did_you_mean


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


def validate_schema(config: dict, schema: dict) -> None:
    """Validate `config` against `schema`, filling in the schema's defaults. jsonschema's own recipe for defaults, as
    snakemake.utils.validate applies it; that one reads its schema from a file, and ours is assembled from the
    plug-in registries (workflow.config.assembled_schema). A default is copied into the config, never shared."""
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, property_schema in properties.items():
                if "default" in property_schema:
                    instance.setdefault(name, copy.deepcopy(property_schema["default"]))
        yield from check_properties(validator, properties, instance, subschema)

    validator = validators.extend(Draft202012Validator, {"properties": set_defaults})(schema)
    for error in validator.iter_errors(config):  # the first, as jsonschema's validate() raises it
        raise ConfigError(f"config error: {describe_schema_error(error)}")


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


def check_k(key: str, k: int, dataset: str | None = None, size: int | None = None, split: str | None = None) -> None:
    """A number of clusters must be 2..N: one cluster partitions nothing, and more than N leaves some empty."""
    if k < 2:
        raise ConfigError(f"config error: {key} = {k} clusters partition nothing; allowed: 2.." + (f"{size}" if size else "N"))
    if size is not None and k > size:
        raise ConfigError(f"config error: {key} = {k} is larger than dataset '{dataset}' ({size} samples in split "
                          f"'{split}'); allowed: 2..{size}")


@functools.cache
def _schema_file() -> dict:
    return yaml.safe_load(SCHEMA_FILE.read_text())


def schema_defaults(*path: str) -> dict:
    """The schema's defaults of the properties at `path` (`"diffusion", "edm"`), or of a settings group of its `$defs`
    (`"$defs", "head_training"`): the one place of a default, for the code that also runs on its own (direct calls,
    tests) and must not write a second one."""
    node = _schema_file()
    if path[0] == "$defs":
        properties = node["$defs"][path[1]]
    else:
        for key in path:
            node = node["properties"][key]
        properties = node["properties"]
    return {name: copy.deepcopy(setting["default"]) for name, setting in properties.items() if "default" in setting}


def results_dir_of(config_path: str | Path) -> str:
    """The results folder of a sweep's config file: its `results_dir`, or the schema's default."""
    from lightning_modules.core.contracts import read_config_file

    return read_config_file(config_path).get("results_dir") or _schema_file()["properties"]["results_dir"]["default"]
