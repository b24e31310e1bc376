"""Config validation: the JSON schema (config/schema.yaml, through snakemake.utils.validate) and the
checks a schema cannot express (registry names, K against dataset sizes). Every failure is one line that
names the key and what is allowed."""

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
        for i, space in enumerate(own.get("spaces") or []):
            specs = [b if isinstance(b, str) else b.get("spec", "") for b in space]
            for j, spec in enumerate(specs):
                registered(BACKBONES, split_spec(spec)[0], f"clustering.methods.{method}.spaces[{i}][{j}]")
            if specs[0] not in slugs.values() and specs[0] not in slugs:
                raise ConfigError(f"config error: clustering.methods.{method}.spaces[{i}] starts with '{specs[0]}', "
                                  f"which is not in backbones; the first backbone of a space must be a configured "
                                  f"one (its kNN graph and labels measure the run): "
                                  f"{', '.join(slugs.values())}")
            if len(set(map(backbone_slug, specs))) != len(specs):
                raise ConfigError(f"config error: clustering.methods.{method}.spaces[{i}] repeats a backbone")
    known_datasets(config["clustering"]["upper_bound"].get("datasets", []), "clustering.upper_bound.datasets")

    methods = config["clustering"]["methods"]
    grids = {"clustering.k": config["clustering"]["k"]}
    grids.update({f"clustering.methods.{m}.k": own["k"] for m, own in methods.items() if "k" in own})
    bound_k = config["clustering"]["upper_bound"].get("k")
    if config["clustering"]["upper_bound"]["enabled"] and bound_k:
        grids["clustering.upper_bound.k"] = [bound_k]
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


def _class_set(classes) -> set[str] | None:
    """Classes by name or index, compared as text (None: every class)."""
    return None if not classes else {str(c) for c in classes}


def _shared_classes(in_cfg: dict, out_cfg: dict, out_classes) -> set[str] | str | None:
    """The classes both sides of an OOD pair hold ("all" when one side holds every class), or None when
    they come from different data."""
    from lightning_modules.data import BUILDER_KEYS, dataset_options

    def data_of(cfg):
        return cfg["source"], {k: v for k, v in dataset_options(cfg).items() if k not in BUILDER_KEYS}

    if data_of(in_cfg) != data_of(out_cfg):
        return None
    in_set, out_set = _class_set(in_cfg.get("classes")), _class_set(out_classes or out_cfg.get("classes"))
    if in_set is None or out_set is None:
        return "all"
    return in_set & out_set or None


def check_ood(config: dict) -> None:
    """OOD pairs and scorers: known names, a fit split apart from the eval split, labels where a scorer
    needs them, no class on both sides of a pair, a text tower for zero-shot, images for attacks."""
    from lightning_modules.backbones import BACKBONES, split_spec
    from lightning_modules.data import DATASETS, is_labelled, known_size
    from lightning_modules.ood import OOD_SCORERS, split_scorer_name
    from lightning_modules.sweep import ood_pairs

    ood = config.get("ood") or {}
    pairs_config = ood.get("pairs", [])
    if not pairs_config:
        return
    adversarial = ood.get("adversarial", {})
    scorers = {}
    for key, names in (("ood.scorers", ood.get("scorers", [])), ("ood.adversarial.scorers", adversarial.get("scorers", []))):
        for name in names:
            try:
                scorers[name] = OOD_SCORERS.entry(split_scorer_name(name)[0] if key != "ood.scorers" else name)
            except UnknownNameError as error:
                raise ConfigError(f"config error: {key}: {error}") from None
    if adversarial.get("scorers") and not adversarial.get("styles"):
        raise ConfigError("config error: ood.adversarial.styles is empty; give at least one, e.g. {smooth: 5000}")
    eval_split = ood["eval_split"]
    datasets = config["datasets"]
    names = [pair.get("name") for pair in pairs_config if pair.get("name")]
    if len(set(ood_pairs(config))) != len(pairs_config):
        raise ConfigError(f"config error: ood.pairs: two pairs share a name ({', '.join(names) or 'the default names'}); "
                          f"give each a unique `name`")
    for index, pair in enumerate(pairs_config):
        key = f"ood.pairs[{index}]"
        out = pair["out"] if isinstance(pair["out"], dict) else {"dataset": pair["out"]}
        for side, name in (("in", pair["in"]), ("out", out["dataset"])):
            _require_eval_split(name, f"{key}.{side}", datasets, eval_split)
        in_cfg, out_cfg = datasets[pair["in"]], datasets[out["dataset"]]
        fit_split = in_cfg["split"]
        if fit_split in (eval_split, "all"):
            raise ConfigError(f"config error: {key}.in: dataset '{pair['in']}' fits the scorers on split '{fit_split}', "
                              f"which holds the ID test samples of split '{eval_split}'; set datasets.{pair['in']}.split "
                              f"to a training split (e.g. train)")
        shared = _shared_classes(in_cfg, out_cfg, out.get("classes"))
        if shared:
            what = "every class" if shared == "all" else f"classes {', '.join(sorted(shared))}"
            raise ConfigError(f"config error: {key}: in '{pair['in']}' and out '{out['dataset']}' share {what}; "
                              f"OOD classes must not be ID classes (set `classes` on one side)")
        if out.get("classes") and not is_labelled(out_cfg):
            raise ConfigError(f"config error: {key}.out.classes: dataset '{out['dataset']}' has no labels to select "
                              f"classes by")
        for name, entry in scorers.items():
            if entry.info.get("labels") == "classes" and not is_labelled(in_cfg):
                raise ConfigError(f"config error: ood.scorers: '{name}' needs the ID labels, but dataset "
                                  f"'{pair['in']}' ({key}.in) has none; use an unsupervised scorer (knn1, "
                                  f"cluster-mahalanobis)")
            if entry.info.get("labels") == "plp" and not is_labelled(in_cfg):
                raise ConfigError(f"config error: ood.scorers: '{name}' needs the ID class names, but dataset "
                                  f"'{pair['in']}' ({key}.in) has none; PLP labels the ID images by their names")
        if adversarial.get("scorers") and DATASETS.entry(out_cfg["source"]).info.get("images") is False:
            raise ConfigError(f"config error: ood.adversarial needs images, but dataset '{out['dataset']}' "
                              f"({key}.out) holds feature vectors; attack image datasets only")
        if any(entry.info.get("labels") == "clusters" for entry in scorers.values()):
            clusters = ood["clusters"]
            if clusters["method"] not in config["clustering"]["methods"]:
                methods = config["clustering"]["methods"]
                raise ConfigError(f"config error: ood.clusters.method = '{clusters['method']}'"
                                  f"{did_you_mean(clusters['method'], methods)}; allowed: the configured "
                                  f"clustering.methods ({', '.join(methods)})")
            size = known_size(in_cfg["source"], fit_split)
            if size is not None and clusters["k"] > size:
                raise ConfigError(f"config error: ood.clusters.k = {clusters['k']} is larger than dataset "
                                  f"'{pair['in']}' ({size} samples); allowed: 2..{size}")
    _check_negatives(ood, scorers, datasets, eval_split)
    text_towers = [b["spec"] for b in config["backbones"]
                   if BACKBONES.entry(split_spec(b["spec"])[0]).info.get("text_tower")]
    text_scorers = [name for name, entry in scorers.items() if entry.info.get("text")]
    if text_scorers and not text_towers:
        specs = ", ".join(f"'{b['spec']}'" for b in config["backbones"])
        raise ConfigError(f"config error: ood.scorers: {', '.join(text_scorers)} needs a backbone with a text tower "
                          f"(openclip/…), and none of {specs} has one; add one or drop the scorer")


def _check_negatives(ood: dict, scorers: dict, datasets: dict, eval_split: str) -> None:
    """Scorers that train on shifted negatives need `ood.negatives`: name -> a dataset with the
    fit split (the negatives) and the eval split (the sensitivity score's shifted ID test images)."""
    takes = [name for name, entry in scorers.items() if entry.info.get("negatives")]
    negatives = ood.get("negatives") or {}
    if takes and not negatives:
        raise ConfigError(f"config error: ood.scorers: {', '.join(takes)} trains against shifted negatives, but "
                          f"ood.negatives is empty; add e.g. {{rotations: <a dataset with "
                          f"`shift: rotations`>}}")
    for label, dataset in negatives.items():  # their eval split gives the sensitivity score
        _require_eval_split(dataset, f"ood.negatives.{label}", datasets, eval_split)


def _require_eval_split(name: str, key: str, datasets: dict, eval_split: str) -> None:
    """`key` names a configured dataset that has the split `ood.eval_split`."""
    from lightning_modules.data import DATASETS

    if name not in datasets:
        raise ConfigError(f"config error: {key} names dataset '{name}'{did_you_mean(name, datasets)}; "
                          f"allowed: {', '.join(datasets)}")
    splits = DATASETS.entry(datasets[name]["source"]).info.get("splits")
    if splits is not None and eval_split not in splits:
        raise ConfigError(f"config error: ood.eval_split = '{eval_split}' is not a split of dataset '{name}' ({key}); "
                          f"allowed: {', '.join(splits)}")


def _config_paths(config: dict):
    """(key, path) of every file or folder the config points at: dataset files and backbone weights."""
    from lightning_modules.data import FILE_OPTIONS

    for name, dataset in config["datasets"].items():
        for option in FILE_OPTIONS:
            if option in dataset:
                yield f"datasets.{name}.{option}", str(dataset[option]).replace("{split}", dataset.get("split", "all"))
    for index, backbone in enumerate(config["backbones"]):
        if isinstance(backbone, dict) and backbone.get("weights"):
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


def check_diffusion(config: dict) -> None:
    """Diffusion: known image datasets, a known denoiser (a UNet that can downsample the image size),
    conditions that name a configured clustering method and K >= 2, labels for class conditioning and for the
    classifier feature network, a configured backbone."""
    from lightning_modules.data import DATASETS, is_labelled
    from lightning_modules.diffusion import DENOISERS, check_image_size, parse_condition
    from lightning_modules.naming import backbone_slug

    diffusion = config.get("diffusion") or {}
    if not diffusion.get("datasets"):
        return
    network = diffusion["network"]
    try:
        DENOISERS.entry(network["name"])
        if network["name"] == "ddpmpp" and diffusion["image_size"] is not None:
            check_image_size(diffusion["image_size"], len(network.get("channels", (256, 256, 256))))
    except (KeyError, ValueError) as error:
        raise ConfigError(f"config error: diffusion.network: {error}") from None
    wanted = diffusion.get("backbone")
    specs = [b["spec"] for b in config["backbones"]]
    if wanted is not None and wanted not in specs + [backbone_slug(spec) for spec in specs]:
        raise ConfigError(f"config error: diffusion.backbone = '{wanted}'{did_you_mean(wanted, specs)}; allowed: "
                          f"a configured backbone ({', '.join(specs)})")
    methods = config["clustering"]["methods"]
    for key, method in [(f"diffusion.clusters.methods[{i}]", m) for i, m in enumerate(diffusion["clusters"]["methods"])]:
        if method not in methods:
            raise ConfigError(f"config error: {key} = '{method}'{did_you_mean(method, methods)}; allowed: the "
                              f"configured clustering.methods ({', '.join(methods)})")
    for index, condition in enumerate(diffusion["conditions"]):
        key = f"diffusion.conditions[{index}]"
        try:
            kind, method, k = parse_condition(condition)
        except (KeyError, ValueError) as error:
            raise ConfigError(f"config error: {key}: {error}") from None
        if kind == "clusters" and method not in methods:
            raise ConfigError(f"config error: {key} = '{condition}' names method '{method}'"
                              f"{did_you_mean(method, methods)}; allowed: the configured clustering.methods "
                              f"({', '.join(methods)})")
        if kind == "clusters" and k < 2:
            raise ConfigError(f"config error: {key} = '{condition}': K = {k} cluster conditions on nothing; use "
                              f"K >= 2, or 'none'")
    for index, name in enumerate(diffusion["datasets"]):
        key = f"diffusion.datasets[{index}]"
        if name not in config["datasets"]:
            raise ConfigError(f"config error: {key} names '{name}'{did_you_mean(name, config['datasets'])}; "
                              f"allowed: {', '.join(config['datasets'])}")
        dataset = config["datasets"][name]
        if DATASETS.entry(dataset["source"]).info.get("images") is False:
            raise ConfigError(f"config error: {key}: dataset '{name}' holds feature vectors; diffusion models "
                              f"images")
        if "class" in diffusion["conditions"] and not is_labelled(dataset):
            raise ConfigError(f"config error: diffusion.conditions: 'class' needs labels, but dataset '{name}' has "
                              f"none; drop 'class' or the dataset")
        if "classifier" in diffusion["metrics"]["networks"] and not is_labelled(dataset):
            raise ConfigError(f"config error: diffusion.metrics.networks: 'classifier' is trained on labels, but "
                              f"dataset '{name}' has none; use inception or backbone")


def validate_config(config: dict, schema_path: str | Path) -> dict:
    validate_schema(config, schema_path)
    check_registries_and_sizes(config)
    check_paths(config)
    check_ood(config)
    check_diffusion(config)
    return config
