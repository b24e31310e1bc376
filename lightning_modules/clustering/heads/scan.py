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


def self_label_head_losses(logits, threshold: float = 0.99):
    """(H, B, K) logits -> (H,): SCAN's self-labelling step. Samples whose most probable cluster has
    probability > threshold are labelled with it; cross-entropy against those labels, each cluster weighted
    by the inverse of its share of the confident samples (class-balanced). A head with no confident
    sample contributes 0."""
    log_p = logits.log_softmax(-1)
    with torch.no_grad():
        confidence, pseudo_labels = log_p.exp().max(-1)
        confident = (confidence > threshold).to(log_p.dtype)
        counts = torch.zeros_like(log_p[:, 0, :]).scatter_add_(1, pseudo_labels, confident)  # (H, K)
        weights = torch.where(counts > 0, confident.sum(1, keepdim=True) / counts.clamp_min(1), 0)
        sample_weights = weights.gather(1, pseudo_labels) * confident  # (H, B)
    picked = log_p.gather(-1, pseudo_labels.unsqueeze(-1)).squeeze(-1)
    return -(sample_weights * picked).sum(1) / sample_weights.sum(1).clamp_min(1e-12)


class SCAN(ClusteringHead):
    """`self_label_epochs` > 0 appends SCAN's self-labelling step after the clustering epochs: the head's
    own confident predictions (> `confidence_threshold`) become class-balanced pseudo-labels."""

    def __init__(self, in_dim: int, n_clusters: int, n_heads: int = 16, entropy_weight: float = 5.0,
                 temperature: float = 0.1, hidden_dim: int = 512, bottleneck_dim: int = 256,
                 self_label_epochs: int = 0, confidence_threshold: float = 0.99, **training):
        super().__init__(in_dim, n_clusters, n_heads, **training)
        self.save_hyperparameters()
        self.student = MultiHead(in_dim, n_clusters, n_heads, hidden_dim, bottleneck_dim)

    def self_labelling(self) -> bool:
        return self.current_epoch >= self.trainer.max_epochs - self.hparams.self_label_epochs

    def head_losses(self, anchors, neighbours):
        if self.hparams.self_label_epochs and self.self_labelling():
            return self_label_head_losses(self.cluster_logits(anchors), self.hparams.confidence_threshold)
        logits_x, logits_y = self.cluster_logits(torch.cat([anchors, neighbours])).chunk(2, dim=1)
        return scan_head_losses(logits_x, logits_y, self.hparams.entropy_weight)

    def cluster_logits(self, x):
        # cosine logits scaled by 1/temperature: plain cosines in [-1, 1] could never be confident
        return self.student(x) / self.hparams.temperature
