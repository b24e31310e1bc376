"""SCAN (Van Gansbeke et al., ECCV 2020) on frozen features: neighbours should share a cluster, and the
batch's mean cluster distribution should have high entropy."""

from __future__ import annotations

import torch

from lightning_modules.clustering.heads.base import ClusteringHead, MultiHead


def scan_head_losses(logits_x, logits_y, entropy_weight: float):
    """(H, B, K) logits of anchors and neighbours -> (H,) losses:
    mean_b -log <p(x), p(x')>  -  entropy_weight * H(mean_b p(x))."""
    log_p_x, log_p_y = logits_x.log_softmax(-1), logits_y.log_softmax(-1)
    consistency = -torch.logsumexp(log_p_x + log_p_y, dim=-1).mean(-1)
    mean_p = log_p_x.exp().mean(1)
    entropy = -(mean_p * mean_p.clamp_min(1e-12).log()).sum(-1)
    return consistency - entropy_weight * entropy


class SCAN(ClusteringHead):
    def __init__(self, in_dim: int, n_clusters: int, n_heads: int = 16, entropy_weight: float = 5.0,
                 temperature: float = 0.1, hidden_dim: int = 512, bottleneck_dim: int = 256, **training):
        super().__init__(in_dim, n_clusters, n_heads, **training)
        self.save_hyperparameters()
        self.student = MultiHead(in_dim, n_clusters, n_heads, hidden_dim, bottleneck_dim)

    def head_losses(self, anchors, neighbours):
        logits_x, logits_y = self.cluster_logits(torch.cat([anchors, neighbours])).chunk(2, dim=1)
        return scan_head_losses(logits_x, logits_y, self.hparams.entropy_weight)

    def cluster_logits(self, x):
        # cosine logits scaled by 1/temperature: plain cosines in [-1, 1] could never be confident
        return self.student(x) / self.hparams.temperature
