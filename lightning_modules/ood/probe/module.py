"""The linear probe as a LightningModule (apart from the package's __init__, so that scoring with a saved probe
never imports Lightning)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.core.training import warmup_cosine


class LinearProbe(pl.LightningModule):
    def __init__(self, in_dim: int, n_classes: int, lr: float = 1e-3, weight_decay: float = 1e-3,
                 warmup_fraction: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.linear = nn.Linear(in_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("probe_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        # Adam with L2 weight decay (plp-official `get_optimizer('adam')`), warm-up then cosine to 0
        optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = self.trainer.estimated_stepping_batches
        return {"optimizer": optimizer, "lr_scheduler": warmup_cosine(optimizer, total, int(total * hp.warmup_fraction))}

