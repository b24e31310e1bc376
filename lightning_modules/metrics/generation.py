"""Generation metrics between real and generated images, in a feature space of the caller's choice (the
clustering backbone's by default: Fréchet distance on self-supervised features is an accepted metric).

Both use torchmetrics' implementations (FrechetInceptionDistance and KernelInceptionDistance accept a custom
feature extractor); the features are computed beforehand, so the extractor here only passes them through."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class _PrecomputedFeatures(nn.Module):
    """What torchmetrics calls the feature extractor: (N, D) features in, the same out."""

    def __init__(self, dims: int):
        super().__init__()
        self.num_features = dims

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _features(array: np.ndarray) -> torch.Tensor:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or len(array) < 2:
        raise ValueError(f"generation metrics need (N >= 2, D) features, got shape {array.shape}")
    return torch.from_numpy(array)


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between the Gaussians fitted to both sets."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, generated = _features(real), _features(generated)
    metric = FrechetInceptionDistance(feature=_PrecomputedFeatures(real.shape[1]), reset_real_features=True).double()
    metric.update(real, real=True)
    metric.update(generated, real=False)
    return float(metric.compute())


def kernel_inception_distance(real: np.ndarray, generated: np.ndarray, subsets: int = 10,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Unbiased squared MMD with the cubic polynomial kernel, averaged over random subsets: (mean, std)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    real, generated = _features(real), _features(generated)
    size = min(subset_size, len(real), len(generated))
    metric = KernelInceptionDistance(feature=_PrecomputedFeatures(real.shape[1]), subsets=subsets,
                                     subset_size=size).double()
    metric.update(real, real=True)
    metric.update(generated, real=False)
    with torch.random.fork_rng():  # the subsets are drawn with torch's global generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)
