"""Cluster-conditioned diffusion (C-EDM: EDM conditioned on cluster labels). Three registries:

- CONDITIONERS: what a denoiser is conditioned on, by name: `none`, `class` (the ground-truth labels) and
  `clusters-<method>-k<K>` (a clustering run's assignments); each is
  `(data, assignments, k) -> (conditioning labels or None, number of classes or None)`.
- DENOISERS: the raw network F inside EDM's preconditioning, by `diffusion.network.name`.
- FEATURE_NETWORKS: the networks samples are scored in, by `diffusion.metrics.networks`."""

from __future__ import annotations

import re

from lightning_modules.core.naming import slugify
from lightning_modules.core.registry import Registry

# The condition that reads a clustering run's assignments, its grammar written once: formed by cluster_condition,
# read by parse_condition, matched as a Snakemake wildcard by condition_pattern
CLUSTER_CONDITION = "clusters-{method}-k{k}"
_CLUSTER_PARTS = {"method": "[a-z0-9]+", "k": r"\d+"}

CONDITIONERS = Registry("diffusion conditioning")
# fit_labels: what the denoiser is fitted on (tracking.uses_labels: only the ground-truth classes count); pattern:
# the regular expression of its condition names (default: its name)
CONDITIONERS.register("none", "lightning_modules.diffusion.conditioning:no_conditioning", fit_labels=None)
CONDITIONERS.register("class", "lightning_modules.diffusion.conditioning:class_conditioning", fit_labels="classes")
CONDITIONERS.register("clusters", "lightning_modules.diffusion.conditioning:cluster_conditioning", fit_labels="clusters",
                      pattern=CLUSTER_CONDITION.format(**_CLUSTER_PARTS))

# The networks samples are scored in (`diffusion.metrics.networks`): (metrics, backbone, classifier_dir, device) ->
# images -> features
FEATURE_NETWORKS = Registry("feature network")
FEATURE_NETWORKS.register("inception", "lightning_modules.diffusion.scoring:inception_network",
                          description="the standard FID network (its weights file: metrics.inception_weights)")
FEATURE_NETWORKS.register("classifier", "lightning_modules.diffusion.scoring:classifier_network",
                          description="a small classifier trained on the data set's labelled training split")
FEATURE_NETWORKS.register("backbone", "lightning_modules.diffusion.scoring:backbone_network",
                          description="the clustering backbone (diffusion.backbone)")

DDPMPP_CHANNELS = (256, 256, 256)  # the UNet's channels per level when `diffusion.network` gives none (EDM's CIFAR-10)
DENOISERS = Registry("diffusion network")
DENOISERS.register("mlp", "lightning_modules.diffusion.networks:DenoisingMLP", description="residual MLP, small images on CPU")
DENOISERS.register("ddpmpp", "lightning_modules.diffusion.networks:DDPMppUNet", description="DDPM++-like UNet (CIFAR)")

# The diffusion settings a run is trained, sampled and scored with: a diffusion run's Snakemake params (its grid,
# `datasets`, `conditions`, `clusters`, `seeds`, `backbone`, is in its wildcards and inputs); the feature classifier
# reads only `image_size`, `fit` and `metrics.classifier_epochs` (CLASSIFIER_SETTINGS).
RUN_SETTINGS = ("image_size", "fit", "network", "edm", "train_steps", "batch_size", "lr", "lr_rampup_kimg",
                "ema_halflife_kimg", "ema_rampup_ratio", "p_uncond", "checkpoint_every", "devices", "strategy",
                "precision", "n_samples", "guidance", "sample_labels", "metrics")


def run_settings(diffusion: dict) -> dict:
    return {key: diffusion[key] for key in RUN_SETTINGS}


def classifier_settings(diffusion: dict) -> dict:
    return {"image_size": diffusion["image_size"], "fit": diffusion["fit"],
            "metrics": {"classifier_epochs": diffusion["metrics"]["classifier_epochs"]}}


_CLUSTERS = re.compile("^" + CLUSTER_CONDITION.format(**{name: f"({part})" for name, part in _CLUSTER_PARTS.items()}) + "$")


def cluster_condition(method: str, k: int) -> str:
    """The condition that reads a clustering run's assignments: `clusters-<method>-k<K>` (parse_condition's inverse)."""
    return CLUSTER_CONDITION.format(method=method, k=k)


def condition_pattern() -> str:
    """The regular expression of every registered condition's names (the `cond` wildcard's constraint)."""
    return "|".join(CONDITIONERS.entry(name).info.get("pattern", re.escape(name)) for name in CONDITIONERS.names())


def parse_condition(name: str) -> tuple[str, str | None, int | None]:
    """`none` -> ("none", None, None); `clusters-temi-k20` -> ("clusters", "temi", 20)."""
    match = _CLUSTERS.match(name)
    if match:
        return "clusters", match.group(1), int(match.group(2))
    CONDITIONERS.entry(name)  # an unknown name raises, listing the allowed ones
    if name == "clusters":
        raise ValueError("diffusion conditioning 'clusters' needs a method and K: clusters-<method>-k<K>")
    return name, None, None


def check_image_size(image_size: int, n_levels: int) -> None:
    """The UNet halves the image n_levels - 1 times; the size must survive that exactly."""
    factor = 2 ** (n_levels - 1)
    if image_size % factor:
        raise ValueError(f"diffusion.image_size = {image_size} cannot be downsampled {n_levels - 1} times by the "
                         f"UNet ({n_levels} levels in diffusion.network.channels); use a multiple of {factor}")



def diffusion_backbone(config: dict) -> dict:
    """The backbone entry whose features score the samples and whose clusters condition them."""
    wanted = (config.get("diffusion") or {}).get("backbone")
    backbones = config["backbones"]
    return next((b for b in backbones if wanted in (None, b["spec"], slugify(b["spec"]))), backbones[0])

__all__ = ["CONDITIONERS", "diffusion_backbone", "DDPMPP_CHANNELS", "FEATURE_NETWORKS", "DENOISERS", "check_image_size", "classifier_settings", "cluster_condition", "condition_pattern", "parse_condition",
           "run_settings"]
