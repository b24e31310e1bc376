"""Linear probes on frozen embeddings: the logits that the post-hoc OOD scores (`ood/posthoc.py`) read. The OOD
probe's one home: training and scoring here, its LightningModule in `module.py`, its label sources and the shared
probe's job in `labels.py`.

A probe is trained once per ID dataset x backbone x label source by the `ood_probe` rule and shared by every
score that reads it. Label sources: `classes` (the ID labels), `clusters` (a clustering run's assignments)
and `plp` (CLIP zero-shot pseudo-labels from the class names alone; Adaloglou et al., TMLR 2024).

Training follows plp-official-tmlr2024 `linear_probing.py`: features standardised with the ID training mean
and standard deviation (`--embed_norm`; torch's unbiased std, as `load_embed_stats` / `eval_backbone`), Adam with
L2 weight decay 1e-3, 100 epochs at batch 256, cosine schedule from 0 with a 10% linear warm-up
(`utils.cosine_scheduler_iter`) down to 0, peaking at `lr` at any batch size: the official schedule is built
from the unscaled `args.lr` and overwrites the optimiser's batch-scaled rate at every step.
`feature_norm: l2 | none` are the named alternatives (l2 was this platform's earlier default)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_modules.core.io import row_chunks
from lightning_modules.search.rows import float_rows

FEATURE_NORMS = ("standardise", "l2", "none")
CHUNK_ROWS = 65536


@dataclass
class Probe:
    """logits(x) = features(x) @ weight.T + bias; features: the normalisation the probe was trained on."""

    weight: np.ndarray                # (C, D)
    bias: np.ndarray                  # (C,)
    feature_norm: str
    mean: np.ndarray | None = None    # (D,) standardisation statistics of the ID training embeddings
    scale: np.ndarray | None = None
    train_loss: float = float("nan")

    def features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.feature_norm == "standardise":
            return (x - self.mean) / self.scale
        if self.feature_norm == "l2":
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.features(x) @ self.weight.T + self.bias

    def save(self, path) -> None:
        from lightning_modules.core.io import atomic_path

        arrays = {"weight": self.weight, "bias": self.bias, "feature_norm": np.array(self.feature_norm),
                  "train_loss": np.array(self.train_loss)}
        if self.mean is not None:
            arrays.update(mean=self.mean, scale=self.scale)
        with atomic_path(Path(path)) as tmp:
            np.savez(tmp, **arrays)

    @classmethod
    def load(cls, path) -> "Probe":
        with np.load(path) as arrays:
            return cls(weight=arrays["weight"], bias=arrays["bias"], feature_norm=str(arrays["feature_norm"]),
                       mean=arrays["mean"] if "mean" in arrays.files else None,
                       scale=arrays["scale"] if "scale" in arrays.files else None,
                       train_loss=float(arrays["train_loss"]))


def _feature_statistics(embeddings: np.ndarray, feature_norm: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    if feature_norm not in FEATURE_NORMS:
        raise ValueError(f"ood.probe.feature_norm = '{feature_norm}'; allowed: {', '.join(FEATURE_NORMS)}")
    if feature_norm != "standardise":
        return None, None
    # two passes over row chunks in float64: a memory-mapped artifact is never copied whole
    n = len(embeddings)
    mean = sum(float_rows(embeddings[rows], np.float64).sum(axis=0) for rows in row_chunks(n, CHUNK_ROWS)) / n
    # unbiased (n - 1), as torch's std in the official code
    variance = sum(((float_rows(embeddings[rows], np.float64) - mean) ** 2).sum(axis=0)
                   for rows in row_chunks(n, CHUNK_ROWS)) / max(n - 1, 1)
    scale = np.sqrt(variance)
    # a dimension with no spread (a constant pixel) stays unscaled instead of dividing by zero
    return mean, np.where(scale > 0, scale, 1.0)



def train_probe(embeddings: np.ndarray, labels: np.ndarray, n_classes: int | None = None,
                feature_norm: str = "standardise", epochs: int = 100, batch_size: int = 256, lr: float = 1e-3,
                weight_decay: float = 1e-3, warmup_fraction: float = 0.1, seed: int = 0, progress: bool = False,
                logger=None, checkpoint_dir=None) -> Probe:
    """A linear probe (C = n_classes, default labels.max() + 1) trained with cross-entropy on `labels`. With
    `checkpoint_dir`, `last.ckpt` is kept there after every epoch and a run that finds one resumes from it."""
    import warnings

    import pytorch_lightning as pl
    import torch
    from lightning_modules.ood.probe.module import LinearProbe
    from lightning_modules.core.seeded_data import ShuffledTensors

    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    mean, scale = _feature_statistics(embeddings, feature_norm)
    probe = Probe(np.zeros((n_classes, embeddings.shape[1])), np.zeros(n_classes), feature_norm, mean, scale)
    x = np.empty(embeddings.shape, dtype=np.float32)  # the one float32 copy the training loop reads
    for rows in row_chunks(len(embeddings), CHUNK_ROWS):
        x[rows] = probe.features(embeddings[rows])
    x = torch.from_numpy(x)
    pl.seed_everything(seed, workers=True, verbose=False)
    data = ShuffledTensors(x, torch.tensor(labels), batch_size, seed)
    module = LinearProbe(x.shape[1], n_classes, lr, weight_decay, warmup_fraction)
    callbacks, resume_from = [], None
    if checkpoint_dir is not None:
        from lightning_modules.core.training import resumable, run_identity

        callbacks, resume_from = resumable(checkpoint_dir, run_identity(module, x, labels, seed=seed, epochs=epochs,
                                                                        batch_size=batch_size), every_n_epochs=1)
    steps_per_epoch = -(-len(x) // data.batch_size)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=logger if logger is not None else False,
                         enable_checkpointing=checkpoint_dir is not None, callbacks=callbacks,
                         enable_model_summary=False, enable_progress_bar=progress,
                         deterministic=True, log_every_n_steps=max(1, min(50, steps_per_epoch)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # resuming: it holds last.ckpt
        trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    linear = module.linear.cpu()
    probe.weight = linear.weight.detach().double().numpy()
    probe.bias = linear.bias.detach().double().numpy()
    probe.train_loss = float(trainer.callback_metrics["probe_loss"])
    return probe
