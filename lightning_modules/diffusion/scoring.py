"""Scoring samples against real images: FD, KID and the real-vs-real floor in each feature network, and the
feature networks themselves (the FEATURE_NETWORKS registry's builders)."""

from __future__ import annotations

import numpy as np


def real_reference_sets(count: int, n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random index sets of the real images, each of min(n_samples, N // 2): the first is the
    reference the samples are scored against, the second gives the real-vs-real floor at the same size."""
    size = min(n_samples, count // 2)
    order = np.random.default_rng(seed).permutation(count)
    return order[:size], order[size:2 * size]


def score_samples(samples: np.ndarray, real: np.ndarray, floor: np.ndarray, networks: dict, kid_subsets: int,
                  kid_subset_size: int, seed: int) -> dict:
    """FD and KID of the samples against `real`, and the FD of `floor` (other real images) against `real`, in
    each feature network: `fd_<net>`, `kid_<net>`, `kid_std_<net>`, `fd_floor_<net>`. KID's subsets are at
    most half of the smaller set, so they differ from each other."""
    from lightning_modules.metrics.generation import frechet_distance, kernel_inception_distance

    record = {}
    subset = max(2, min(kid_subset_size, len(samples) // 2, len(real) // 2))
    for name, features in networks.items():
        reference, generated = features(real), features(samples)
        record[f"fd_{name}"] = frechet_distance(reference, generated)
        record[f"fd_floor_{name}"] = frechet_distance(reference, features(floor))
        record[f"kid_{name}"], record[f"kid_std_{name}"] = kernel_inception_distance(
            reference, generated, subsets=kid_subsets, subset_size=subset, seed=seed)
    record["kid"] = {"subsets": kid_subsets, "subset_size": subset}
    return record


def inception_network(metrics: dict, backbone: dict, classifier_dir, device: str):
    """The standard FID Inception network (torch-fidelity's weights file): the papers' FID."""
    from lightning_modules.diffusion.features import InceptionFeatures

    return InceptionFeatures(metrics.get("inception_weights"), device=device)


def classifier_network(metrics: dict, backbone: dict, classifier_dir, device: str):
    """A small CNN trained once on the data set's labelled training split: an "Inception" for images it does not fit."""
    from lightning_modules.diffusion.features import ClassifierFeatures

    return ClassifierFeatures(classifier_dir, device=device)


def backbone_network(metrics: dict, backbone: dict, classifier_dir, device: str):
    """The sweep's own backbone's embeddings."""
    from lightning_modules.backbones import build_from_entry
    from lightning_modules.embeddings.extract import embed_images

    model, transform = build_from_entry(backbone)
    return lambda images: embed_images(model, transform, images, progress=False).astype(np.float64)


def feature_networks(metrics: dict, backbone: dict, classifier_dir=None, device: str = "cpu") -> dict:
    """The configured feature networks, built before training so a missing weights file stops the job first."""
    from lightning_modules.diffusion import FEATURE_NETWORKS
    from lightning_modules.core.registry import UnknownNameError

    networks = {}
    for name in metrics["networks"]:
        try:
            build = FEATURE_NETWORKS.get(name)
        except UnknownNameError as error:
            raise ValueError(f"diffusion.metrics.networks: {error}") from None
        networks[name] = build(metrics, backbone, classifier_dir, device)
    return networks
