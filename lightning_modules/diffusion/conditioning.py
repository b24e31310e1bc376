"""What a denoiser is conditioned on (the CONDITIONERS registry's functions) and the labels it samples with."""

from __future__ import annotations

import numpy as np

from lightning_modules.data import DatasetSplit


def no_conditioning(data: DatasetSplit, assignments=None, k=None):
    """Unconditional: EDM's own model, the baseline every condition is compared with."""
    return None, None


def class_conditioning(data: DatasetSplit, assignments=None, k=None):
    """The true classes as labels (uses labels): the supervised reference of C-EDM's comparison."""
    if (data.labels < 0).any() or not data.label_names:
        raise ValueError("diffusion conditioning 'class' needs labels, and this data set has none")
    return data.labels, len(data.label_names)


def cluster_conditioning(data: DatasetSplit, assignments: np.ndarray | None = None, k: int | None = None):
    """A clustering run's assignments as labels: C-EDM's cluster conditioning ("visual groups", no labels)."""
    if assignments is None or k is None:
        raise ValueError("diffusion conditioning on clusters needs a clustering run's assignments and its K")
    if len(assignments) != len(data):
        raise ValueError(f"the cluster assignments have {len(assignments)} entries for {len(data)} images; "
                         f"they come from another data set or split")
    if k < 2:
        raise ValueError(f"diffusion conditioning on K = {k} cluster is no conditioning; use K >= 2 or 'none'")
    return np.asarray(assignments, dtype=np.int64), int(k)


def sample_labels(labels: np.ndarray, n_classes: int, count: int, how: str = "empirical", seed: int = 0) -> np.ndarray:
    """Conditioning labels to sample with: drawn from the labels' own frequencies p(c) (as C-EDM does), or
    uniformly over the classes."""
    rng = np.random.default_rng(seed)
    if how == "uniform":
        return rng.integers(0, n_classes, count)
    if how != "empirical":
        raise ValueError(f"diffusion.sample_labels = '{how}'; allowed: empirical, uniform")
    frequencies = np.bincount(labels, minlength=n_classes) / len(labels)
    return rng.choice(n_classes, size=count, p=frequencies)
