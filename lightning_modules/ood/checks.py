"""The OOD section's checks beyond the schema (config.validate_config runs them): known pairs and scorers, a fit
split apart from the eval split, labels where a scorer needs them, no class on both sides of a pair, a text tower
for zero-shot, images for attacks, datasets for the shifted negatives."""

from __future__ import annotations

from lightning_modules.core.checks import ConfigError, check_k
from lightning_modules.core.registry import UnknownNameError, did_you_mean


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
    from lightning_modules.ood import ood_pairs

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
            check_k("ood.clusters.k", clusters["k"], pair["in"], known_size(in_cfg["source"], fit_split), fit_split)
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
