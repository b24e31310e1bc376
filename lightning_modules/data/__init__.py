"""Dataset registry. Contract: `load_dataset(source, split, options) -> DatasetSplit`.

Registry info `splits` maps each split to its size where the size is known without loading (used to reject
an impossible K before any job runs); `labelled: False` marks sources without labels (the `embeddings`
source has labels when its entry gives a `labels` file); `images: False` marks sources of feature vectors."""

from __future__ import annotations

from lightning_modules.data.base import DatasetSplit
from lightning_modules.data.builders import BUILDER_KEYS, build_benchmark
from lightning_modules.core.registry import Registry

DATASETS = Registry("dataset source")
DATASETS.register(
    "digits",
    "lightning_modules.data.digits:load_digits_split",
    splits={"all": 1797, "train": 1437, "test": 360},
)
DATASETS.register("cifar10", "lightning_modules.data.files:load_cifar_split", splits={"train": 50000, "test": 10000},
                  needs_root=True)
DATASETS.register("cifar100", "lightning_modules.data.files:load_cifar100_split",
                  splits={"train": 50000, "test": 10000}, needs_root=True)
DATASETS.register("imagefolder", "lightning_modules.data.files:load_imagefolder_split", needs_root=True)
DATASETS.register("embeddings", "lightning_modules.data.files:load_embeddings_split", images=False)
DATASETS.register("noise", "lightning_modules.data.noise:load_noise_split", splits={"all": None, "train": None,
                  "test": None}, labelled=False)
DATASETS.register("synthetic", "lightning_modules.data.synthetic:load_synthetic_split",
                  splits={"all": None, "train": None, "test": None}, images=False)


def load_dataset(source: str, split: str, options: dict | None = None) -> DatasetSplit:
    """The source's split, then the benchmark builders its options ask for (see data/builders.py)."""
    splits = DATASETS.entry(source).info.get("splits")
    if splits is not None and split not in splits:
        raise ValueError(f"dataset source '{source}' has no split '{split}'; allowed: {', '.join(splits)}")
    options = options or {}
    loader = DATASETS.get(source)
    loader_options = {key: value for key, value in options.items() if key not in BUILDER_KEYS}
    builders = {key: value for key, value in options.items() if key in BUILDER_KEYS}
    data = loader(split, **loader_options)
    reference_split = (builders.get("easiest") or {}).get("reference_split", split)
    reference = loader(reference_split, **loader_options) if builders.get("easiest") and reference_split != split else None
    return build_benchmark(data, **builders, reference=reference)


def known_size(source: str, split: str) -> int | None:
    return (DATASETS.entry(source).info.get("splits") or {}).get(split)


FILE_OPTIONS = ("root", "path", "labels", "coarse_labels", "hierarchy")


def files_fingerprint(dataset_cfg: dict) -> str | None:
    """sha256 of the names, sizes and modification times of the files a dataset entry points at (None for
    sources without files). Cheap enough to compute when the workflow starts, so that changed data on disk
    re-runs the embedding and everything after it."""
    import hashlib
    import os
    from pathlib import Path

    digest, found = hashlib.sha256(), False
    for key in FILE_OPTIONS:
        if key not in dataset_cfg:
            continue
        split = dataset_cfg.get("split", "all")
        base = Path(str(dataset_cfg[key]).replace("{split}", split)).expanduser()
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        for file in files:
            stat = os.stat(file)
            digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            found = True
    return digest.hexdigest() if found else None


def is_labelled(dataset_cfg: dict) -> bool:
    if dataset_cfg["source"] == "embeddings":
        return "labels" in dataset_cfg
    return DATASETS.entry(dataset_cfg["source"]).info.get("labelled", True)


def dataset_options(dataset_cfg: dict) -> dict:
    """A dataset entry of the config without its `source` and `split`: loader and builder options."""
    return {key: value for key, value in dataset_cfg.items() if key not in ("source", "split")}


def check_options(source: str, options: dict, key_prefix: str = "") -> None:
    """Raise TypeError naming the first option the source's loader does not take."""
    import inspect

    from lightning_modules.core.registry import did_you_mean

    parameters = inspect.signature(DATASETS.get(source)).parameters
    allowed = [name for name in parameters if name != "split"] + list(BUILDER_KEYS)
    for key in options:
        if key not in allowed:
            raise TypeError(f"unknown key '{key_prefix}{key}'{did_you_mean(key, allowed)} for source '{source}'; "
                            f"allowed: {', '.join(allowed) or 'none'}")


__all__ = ["DATASETS", "DatasetSplit", "check_options", "dataset_options", "files_fingerprint", "is_labelled", "known_size",
           "load_dataset"]
