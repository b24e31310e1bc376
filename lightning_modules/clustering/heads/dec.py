"""DEC / DEPICT-style clustering on frozen features: Student-t soft assignments to learnable centroids
(initialised by k-means), pulled towards their sharpened target distribution, with a cluster-frequency
prior that keeps clusters from collapsing. Uses no neighbours."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lightning_modules.clustering.heads.base import ClusteringHead
from lightning_modules.core.softmax import log_softmax


def student_t_logits(x: torch.Tensor, centroids: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """(B, d), (H, K, d) -> (H, B, K) log of the unnormalised Student-t kernel (1 + |x - mu|^2/alpha)^(-(alpha+1)/2)."""
    squared = torch.cdist(x.unsqueeze(0).expand(len(centroids), -1, -1), centroids).pow(2)
    return -(alpha + 1) / 2 * torch.log1p(squared / alpha)


def dec_head_losses(logits: torch.Tensor, prior_weight: float = 1.0) -> torch.Tensor:
    """(H, B, K) -> (H,): KL(P || Q) with the DEC target P ∝ q^2 / f (f = soft cluster frequency),
    plus prior_weight * KL(mean_b q || uniform)."""
    log_q = log_softmax(logits)
    q = log_q.exp()
    with torch.no_grad():
        target = q.pow(2) / q.sum(1, keepdim=True)
        target /= target.sum(-1, keepdim=True)
    kl_target = (target * (target.clamp_min(1e-12).log() - log_q)).sum(-1).mean(-1)
    frequency = q.mean(1)
    n_clusters = q.shape[-1]
    kl_prior = (frequency * (frequency.clamp_min(1e-12).log() + np.log(n_clusters))).sum(-1)
    return kl_target + prior_weight * kl_prior


class DEC(ClusteringHead):
    def __init__(self, in_dim: int, n_clusters: int, n_heads: int = 1, alpha: float = 1.0,
                 prior_weight: float = 1.0, initial_centroids: np.ndarray | None = None, **training):
        super().__init__(in_dim, n_clusters, n_heads, **training)
        self.save_hyperparameters(ignore=["initial_centroids"])
        initial = torch.zeros(n_heads, n_clusters, in_dim) if initial_centroids is None else \
            torch.as_tensor(initial_centroids, dtype=torch.float32)
        self.centroids = nn.Parameter(initial.clone())

    def head_losses(self, anchors, neighbours):
        return dec_head_losses(self.cluster_logits(anchors), self.hparams.prior_weight)

    def cluster_logits(self, x, head=None):
        centroids = self.centroids if head is None else self.centroids[head:head + 1]
        return student_t_logits(x, centroids, self.hparams.alpha)
