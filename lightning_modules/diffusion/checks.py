"""The diffusion section's checks beyond the schema (config.validate_config runs them)."""

from __future__ import annotations

from lightning_modules.core.checks import ConfigError, check_k
from lightning_modules.core.registry import did_you_mean


def check_diffusion(config: dict) -> None:
    """Diffusion: known image datasets, a known denoiser (a UNet that can downsample the image size),
    conditions that name a configured clustering method and K >= 2, labels for class conditioning and for the
    classifier feature network, a configured backbone."""
    from lightning_modules.data import DATASETS, is_labelled
    from lightning_modules.diffusion import DDPMPP_CHANNELS, DENOISERS, check_image_size, parse_condition
    from lightning_modules.core.naming import backbone_slug

    diffusion = config.get("diffusion") or {}
    if not diffusion.get("datasets"):
        return
    network = diffusion["network"]
    try:
        DENOISERS.entry(network["name"])
        if network["name"] == "ddpmpp" and diffusion["image_size"] is not None:
            check_image_size(diffusion["image_size"], len(network.get("channels", DDPMPP_CHANNELS)))
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
        if kind == "clusters":
            check_k(f"{key} = '{condition}': K", k)
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
