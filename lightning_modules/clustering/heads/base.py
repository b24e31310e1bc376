"""What every clustering head shares: H heads as one batched network, the training loop configuration
(AdamW, warm-up then cosine schedule, no weight decay on biases, an optionally frozen last layer), per-head
loss bookkeeping and label-free head selection. Defaults follow TEMI-official-BMVC2023 (`train_main.py`,
`utils.py` from DINO, `model_builders/multi_head.py`)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.core.training import warmup_cosine


class MultiHead(nn.Module):
    """H heads, each Linear(d->hidden) -> GELU -> Linear(hidden->bottleneck) -> L2-normalise ->
    weight-normalised Linear(bottleneck->K, no bias), evaluated in one batched computation.

    The first layer is one GEMM for all heads (its input is shared); the others are batched matmuls
    over stacked weights. The last layer is DINO's weight-normalised linear map: per cluster a unit direction
    times a gain g initialised to 1. `norm_last_layer=True` fixes g at 1 (logits are cosines in [-1, 1]);
    False learns it, TEMI's default (`main_args.py`: `--norm_last_layer False`).
    """

    def __init__(self, in_dim: int, n_clusters: int, n_heads: int = 16, hidden_dim: int = 512,
                 bottleneck_dim: int = 256, norm_last_layer: bool = True):
        super().__init__()
        self.n_heads, self.hidden_dim = n_heads, hidden_dim
        self.first = nn.Linear(in_dim, n_heads * hidden_dim)
        self.second_weight = nn.Parameter(torch.empty(n_heads, hidden_dim, bottleneck_dim))
        self.second_bias = nn.Parameter(torch.zeros(n_heads, 1, bottleneck_dim))
        self.last_direction = nn.Parameter(torch.empty(n_heads, bottleneck_dim, n_clusters))
        for weight in (self.first.weight, self.second_weight, self.last_direction):
            nn.init.trunc_normal_(weight, std=0.02)
        nn.init.zeros_(self.first.bias)
        # DINO's weight_g: (K, 1) per head, so weight decay applies to it (it is not a bias)
        self.last_gain = nn.Parameter(torch.ones(n_heads, 1, n_clusters), requires_grad=not norm_last_layer)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        return [self.last_direction, self.last_gain]

    def forward(self, x: torch.Tensor, head: int | None = None) -> torch.Tensor:
        """(B, d) -> (H, B, K) logits; with `head`, (1, B, K) of that head alone (1/H of the work)."""
        first_weight, first_bias, second_bias, second_weight, direction, gain = self._weights(head)
        hidden = F.gelu(F.linear(x, first_weight, first_bias))
        hidden = hidden.view(len(x), -1, self.hidden_dim).transpose(0, 1)
        bottleneck = F.normalize(torch.baddbmm(second_bias, hidden, second_weight), dim=-1)
        return torch.bmm(bottleneck, F.normalize(direction, dim=1)) * gain

    def _weights(self, head: int | None) -> tuple[torch.Tensor, ...]:
        """All heads' parameters as they are, or one head's slices. Not `parameter[:]` for all heads: autograd
        would then build each parameter's gradient as a zeroed full-size tensor plus a copy, every step (at
        H 16, 512x256 a sixth of the step's time)."""
        weights = (self.first.weight, self.first.bias, self.second_bias, self.second_weight, self.last_direction,
                   self.last_gain)
        if head is None:
            return weights
        rows = slice(head * self.hidden_dim, (head + 1) * self.hidden_dim)
        return (*(weight[rows] for weight in weights[:2]), *(weight[head:head + 1] for weight in weights[2:]))


class ClusteringHead(pl.LightningModule, ABC):
    """Base LightningModule: subclasses define `head_losses(anchors, neighbours) -> (H,)` and
    `cluster_logits(x, head=None) -> (H, B, K)` (probabilities are their softmax).

    Schedule (DINO's `cosine_scheduler`, as TEMI uses it): linear warm-up from 0 to `lr` over `warmup_epochs`,
    then cosine from `lr` to `min_lr` (None: `min_lr = lr`, i.e. constant, as in TEMI's README run); both are
    scaled by batch_size / 256. `freeze_last_layer`: epochs during which the last layer gets no update (TEMI: 1).
    """

    def __init__(self, in_dim: int, n_clusters: int, n_heads: int = 16, lr: float = 1e-4,
                 weight_decay: float = 1e-4, warmup_epochs: int = 0, batch_size: int = 256,
                 min_lr: float | None = None, freeze_last_layer: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.register_buffer("epoch_loss_sum", torch.zeros(n_heads), persistent=False)
        self.register_buffer("last_epoch_head_loss", torch.full((n_heads,), float("nan")))
        self.epoch_batches = 0

    @abstractmethod
    def head_losses(self, anchors: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        """(B, d) anchors and their neighbours -> (H,) per-head losses."""

    @abstractmethod
    def cluster_logits(self, x: torch.Tensor, head: int | None = None) -> torch.Tensor:
        """(B, d) -> (H, B, K) logits; with `head`, (1, B, K) of that head only."""

    def on_train_epoch_start(self) -> None:
        self.epoch_loss_sum.zero_()
        self.epoch_batches = 0

    def training_step(self, batch, batch_idx):
        losses = self.head_losses(*batch)
        self.epoch_loss_sum += losses.detach()
        self.epoch_batches += 1
        # Heads share no parameters: the sum trains each one as if it were alone.
        return losses.sum()

    def on_train_epoch_end(self) -> None:
        if self.epoch_batches:
            self.last_epoch_head_loss.copy_(self.epoch_loss_sum / self.epoch_batches)
            # logged once per epoch from our own sums: self.log on every step costs more than a small step
            self.log("train/loss_mean_over_heads", self.last_epoch_head_loss.mean(), prog_bar=True)
            self.log("train/loss_best_head", self.last_epoch_head_loss.min())

    def on_after_backward(self) -> None:
        # DINO's cancel_gradients_last_layer: no gradient, so AdamW leaves the layer (and its moments) untouched
        if self.current_epoch < self.hparams.freeze_last_layer:
            for module in self.modules():
                if isinstance(module, MultiHead):
                    for parameter in module.last_layer_parameters():
                        parameter.grad = None

    def selection_losses(self) -> torch.Tensor:
        """(H,) the losses the head is chosen by: the mean training loss of the last epoch."""
        return self.last_epoch_head_loss

    def selected_head(self) -> int:
        """The head with the lowest selection loss: no labels involved (TEMI's `MultiHead.set_losses`)."""
        return int(torch.argmin(self.selection_losses()).item())

    def configure_optimizers(self):
        hp = self.hparams
        # DINO's get_params_groups: biases and 1-D parameters are not decayed (our batched biases are 3-D)
        decayed, not_decayed = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                exempt = name.endswith("bias") or parameter.ndim == 1
                (not_decayed if exempt else decayed).append(parameter)
        groups = [{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}]
        # linear scaling of the learning rate with the batch size, as in TEMI / DINO
        # fused: one kernel for all parameters (on CPU too); the per-tensor loop dominated small steps
        optimizer = torch.optim.AdamW(groups, lr=hp.lr * hp.batch_size / 256, weight_decay=hp.weight_decay,
                                      fused=True)
        total = self.trainer.estimated_stepping_batches
        warmup = hp.warmup_epochs * total // max(1, self.trainer.max_epochs)
        final = 1.0 if hp.min_lr is None else hp.min_lr / hp.lr
        return {"optimizer": optimizer, "lr_scheduler": warmup_cosine(optimizer, total, warmup, final)}

    @torch.no_grad()
    def head_probabilities(self, embeddings, head: int, batch_size: int = 8192):
        """Yield (B, K) cluster probabilities of one head over the (N, d) array or memory map, in input order,
        `batch_size` rows at a time, computing that head alone: at millions of rows and thousands of clusters
        nothing holds (N, K), and a memory map's pages are released behind the pass."""
        from lightning_modules.core.io import release_rows, row_chunks
        from lightning_modules.search.rows import float_rows

        was_training = self.training
        self.eval()
        with torch.no_grad():
            for rows in row_chunks(len(embeddings), batch_size):
                chunk = torch.from_numpy(float_rows(embeddings[rows])).to(self.device)
                release_rows(embeddings, rows)
                yield self.cluster_logits(chunk, head)[0].softmax(-1).cpu()
        self.train(was_training)
