"""`probe-msp` and `probe-energy`: a linear probe trained on the ID labels, scored by its maximum softmax
probability or its energy (T * logsumexp(logits / T)), both at temperature T."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.clustering.knn import l2_normalise
from lightning_modules.ood.base import OODScorer, known_labels


class LinearProbe(pl.LightningModule):
    def __init__(self, in_dim: int, n_classes: int, lr: float = 1e-3, weight_decay: float = 1e-4):
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
        fused = self.device.type in ("cpu", "cuda")
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay,
                                 fused=fused)


class ProbeScorer(OODScorer):
    """Features are L2-normalised (as for CLIP probes) unless `normalise` is false."""

    def __init__(self, score: str = "msp", temperature: float = 1.0, epochs: int = 100, batch_size: int = 256,
                 lr: float = 1e-3, weight_decay: float = 1e-4, normalise: bool = True, seed: int = 0,
                 progress: bool = False, logger=None):
        if score not in ("msp", "energy"):
            raise ValueError(f"probe scorer: score = '{score}'; allowed: msp, energy")
        self.score_kind, self.temperature, self.normalise = score, temperature, normalise
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.seed, self.progress, self.logger = seed, progress, logger

    def _features(self, x: np.ndarray) -> torch.Tensor:
        x = l2_normalise(x) if self.normalise else np.asarray(x, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(x))

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "ProbeScorer":
        import warnings

        from torch.utils.data import DataLoader, TensorDataset

        labels = known_labels(labels, f"probe-{self.score_kind}")
        pl.seed_everything(self.seed, workers=True, verbose=False)
        x = self._features(embeddings)
        loader = DataLoader(TensorDataset(x, torch.from_numpy(labels)), batch_size=min(self.batch_size, len(x)),
                            shuffle=True, generator=torch.Generator().manual_seed(self.seed))
        self.module_ = LinearProbe(x.shape[1], int(labels.max()) + 1, self.lr, self.weight_decay)
        trainer = pl.Trainer(max_epochs=self.epochs, accelerator="auto", devices=1,
                             logger=self.logger if self.logger is not None else False, enable_checkpointing=False,
                             enable_model_summary=False, enable_progress_bar=self.progress, deterministic=True,
                             log_every_n_steps=max(1, min(50, len(loader))))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            trainer.fit(self.module_, loader)
        self.train_loss_ = float(trainer.callback_metrics["probe_loss"])
        return self

    def logits(self, x: np.ndarray) -> torch.Tensor:
        self.module_.eval()
        with torch.inference_mode():
            return self.module_.cpu()(self._features(x)).double()

    def score(self, x: np.ndarray) -> np.ndarray:
        scaled = self.logits(x) / self.temperature
        if self.score_kind == "msp":
            return scaled.softmax(dim=1).max(dim=1).values.numpy()
        return (self.temperature * torch.logsumexp(scaled, dim=1)).numpy()
