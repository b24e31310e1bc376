"""Sinkhorn (SwAV-style swapped prediction): each of a kNN pair predicts the other's equipartitioned
Sinkhorn-Knopp assignment. The balanced-clusters baseline."""

from __future__ import annotations

import torch

from lightning_modules.clustering.heads.base import ClusteringHead, MultiHead
from lightning_modules.core.softmax import log_softmax


@torch.no_grad()
def sinkhorn_targets(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """(H, B, K) scores -> (H, B, K) soft assignments: each sample's row sums to 1 and, as the iterations
    converge, each cluster receives B/K of the mass (equipartition)."""
    log_q = scores.float() / epsilon
    q = (log_q - log_q.amax(dim=(1, 2), keepdim=True)).exp()
    q /= q.sum(dim=(1, 2), keepdim=True)
    n_samples, n_clusters = q.shape[1], q.shape[2]
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True) * n_clusters  # every cluster: total mass 1/K
        q /= q.sum(dim=2, keepdim=True) * n_samples   # every sample: total mass 1/B
    return q * n_samples


class Sinkhorn(ClusteringHead):
    def __init__(self, in_dim: int, n_clusters: int, n_heads: int = 16, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, temperature: float = 0.1, hidden_dim: int = 512,
                 bottleneck_dim: int = 256, **training):
        super().__init__(in_dim, n_clusters, n_heads, **training)
        self.save_hyperparameters()
        self.student = MultiHead(in_dim, n_clusters, n_heads, hidden_dim, bottleneck_dim)

    def head_losses(self, anchors, neighbours):
        hp = self.hparams
        scores_x, scores_y = self.student(torch.cat([anchors, neighbours])).chunk(2, dim=1)
        target_x = sinkhorn_targets(scores_x.detach(), hp.epsilon, hp.sinkhorn_iterations)
        target_y = sinkhorn_targets(scores_y.detach(), hp.epsilon, hp.sinkhorn_iterations)
        log_p_x = log_softmax(scores_x / hp.temperature)
        log_p_y = log_softmax(scores_y / hp.temperature)
        return -((target_y * log_p_x).sum(-1) + (target_x * log_p_y).sum(-1)).mean(-1) / 2

    def cluster_logits(self, x, head=None):
        return self.student(x, head) / self.hparams.temperature
