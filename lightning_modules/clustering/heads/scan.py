"""SCAN (Van Gansbeke et al., ECCV 2020) on frozen features: neighbours should share a cluster, and the
batch's mean cluster distribution should have high entropy. Follows wvangansbeke/Unsupervised-Classification
(`losses/losses.py`: SCANLoss, ConfidenceBasedCE; `scan.py` and `selflabel.py`: the head with the lowest SCAN
loss is kept and only that head is self-labelled)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_modules.clustering.heads.base import ClusteringHead, MultiHead
from lightning_modules.core.softmax import log_softmax


def scan_head_losses(logits_x, logits_y, entropy_weight: float):
    """(H, B, K) logits of anchors and neighbours -> (H,) losses:
    mean_b -log <p(x), p(x')>  -  entropy_weight * H(mean_b p(x)). As in SCAN's code, -log is capped at 100
    (nn.BCELoss clamps its log at -100) and the entropy reads probabilities clamped at 1e-8 (its `entropy`)."""
    log_p_x, log_p_y = log_softmax(logits_x), log_softmax(logits_y)
    consistency = -torch.logsumexp(log_p_x + log_p_y, dim=-1).clamp_min(-100).mean(-1)
    mean_p = log_p_x.exp().mean(1).clamp_min(1e-8)
    entropy = -(mean_p * mean_p.log()).sum(-1)
    return consistency - entropy_weight * entropy


def self_label_head_losses(logits, threshold: float = 0.99):
    """(H, B, K) logits -> (H,): SCAN's self-labelling step. Samples whose most probable cluster has
    probability > threshold are labelled with it; cross-entropy against those labels, each cluster weighted
    by the inverse of its share of the confident samples (class-balanced). A head with no confident
    sample contributes 0."""
    log_p = log_softmax(logits)
    with torch.no_grad():
        confidence, pseudo_labels = log_p.exp().max(-1)
        confident = (confidence > threshold).to(log_p.dtype)
        counts = torch.zeros_like(log_p[:, 0, :]).scatter_add_(1, pseudo_labels, confident)  # (H, K)
        weights = torch.where(counts > 0, confident.sum(1, keepdim=True) / counts.clamp_min(1), 0)
        sample_weights = weights.gather(1, pseudo_labels) * confident  # (H, B)
    picked = log_p.gather(-1, pseudo_labels.unsqueeze(-1)).squeeze(-1)
    return -(sample_weights * picked).sum(1) / sample_weights.sum(1).clamp_min(1e-12)


class SCAN(ClusteringHead):
    """`self_label_epochs` > 0 appends SCAN's self-labelling step after the clustering epochs: the head with
    the lowest SCAN loss in the last clustering epoch is chosen then, and only it is trained further, its own
    confident predictions (> `confidence_threshold`) becoming class-balanced pseudo-labels. Self-labelling
    losses never choose the head: they are not comparable between heads (a head with no confident sample
    scores 0)."""

    def __init__(self, in_dim: int, n_clusters: int, n_heads: int = 16, entropy_weight: float = 5.0,
                 temperature: float = 0.1, hidden_dim: int = 512, bottleneck_dim: int = 256,
                 self_label_epochs: int = 0, confidence_threshold: float = 0.99, **training):
        super().__init__(in_dim, n_clusters, n_heads, **training)
        self.save_hyperparameters()
        self.student = MultiHead(in_dim, n_clusters, n_heads, hidden_dim, bottleneck_dim)
        # the SCAN losses of the last clustering epoch: kept through self-labelling (and in checkpoints)
        self.register_buffer("scan_head_loss", torch.full((n_heads,), float("nan")))

    def clustering_epochs(self) -> int:
        return self.trainer.max_epochs - self.hparams.self_label_epochs

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.current_epoch == self.clustering_epochs() - 1:
            self.scan_head_loss.copy_(self.last_epoch_head_loss)

    def selection_losses(self) -> torch.Tensor:
        return self.scan_head_loss

    def head_losses(self, anchors, neighbours):
        if self.current_epoch >= self.clustering_epochs():
            head = self.selected_head()
            loss = self_label_head_losses(self.cluster_logits(anchors)[head:head + 1],
                                          self.hparams.confidence_threshold)
            return F.one_hot(torch.tensor(head, device=loss.device), self.hparams.n_heads).to(loss) * loss
        logits_x, logits_y = self.cluster_logits(torch.cat([anchors, neighbours])).chunk(2, dim=1)
        return scan_head_losses(logits_x, logits_y, self.hparams.entropy_weight)

    def cluster_logits(self, x, head=None):
        # cosine logits scaled by 1/temperature: plain cosines in [-1, 1] could never be confident
        return self.student(x, head) / self.hparams.temperature
