"""Clustering heads behind the same estimator contract as k-means:
`Method(n_clusters, seed, **params).fit_predict(embeddings, neighbours=..., logger=...)`."""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np

from lightning_modules.core.checks import schema_defaults

log = logging.getLogger(__name__)
# probs_ (N, K) is kept (and written as probs.npy) up to this many entries, 200 MB in float32; beyond, only top2_
PROBS_MAX_ENTRIES = 50_000_000
# A head whose module offers compile_step() compiles it on the CPU when the run has at least this many
# (step x head x batch row x cluster) loss entries: compiling cost ~20 s and saved ~4.2e-8 s per entry (TEMI,
# measured), so it repays itself from ~5e8; smaller runs (the demo's, the tests') stay eager
COMPILE_MIN_LOSS_ENTRIES = 2_000_000_000


def top_two(probabilities: np.ndarray) -> np.ndarray:
    """(B, 2) int32 the most and second most probable cluster of each row, the lower index first among ties
    (a stable argsort's order): two argmax passes, where sorting all K columns took 98 of the 113 s of the
    assignment pass at 2M rows and K = 1,000."""
    first = probabilities.argmax(axis=1)
    rest = probabilities.copy()
    rest[np.arange(len(rest)), first] = -np.inf
    return np.stack([first, rest.argmax(axis=1)], axis=1).astype(np.int32)


_TRAINING = schema_defaults("$defs", "head_training")  # every head's training settings (config/schema.yaml)


class HeadClustering:
    """Train a clustering head LightningModule, keep the head with the lowest training loss.

    After `fit`: labels_ (N,) int32, top2_ (N, 2) the two most probable clusters, probs_ (N, K) of the
    selected head (None when N x K > PROBS_MAX_ENTRIES), selected_head_, seconds_ (training, assignment),
    head_losses_ (H,) the losses it was chosen by (the last epoch's mean training loss; SCAN: the last
    clustering epoch's, before self-labelling).
    max_steps: stop after this many optimiser steps even mid-epoch (None: train every epoch; a budget for runs
    and benchmarks at millions of rows).
    """

    module_path: str  # "module:Class" of the LightningModule
    selection_rule = "lowest mean training loss over the last epoch"
    needs_neighbours = True
    defaults: dict = {}

    def __init__(self, n_clusters: int, seed: int = 0, epochs: int = _TRAINING["epochs"],
                 batch_size: int = _TRAINING["batch_size"], lr: float = _TRAINING["lr"],
                 weight_decay: float = _TRAINING["weight_decay"], warmup_epochs: int = _TRAINING["warmup_epochs"],
                 min_lr: float | None = _TRAINING["min_lr"], knn_k: int | None = _TRAINING["knn_k"],
                 progress: bool | None = None, max_steps: int | None = None, **head_params):
        self.n_clusters = n_clusters
        self.seed = seed
        self.epochs = epochs
        self.batch_size = batch_size
        self.training = {"lr": lr, "weight_decay": weight_decay, "warmup_epochs": warmup_epochs,
                         "min_lr": min_lr, "batch_size": batch_size}
        self.knn_k = knn_k  # how many of the stored neighbours to sample from (None: all)
        self.progress = progress  # a progress bar (None: on a terminal only; job logs get step lines)
        self.max_steps = max_steps
        self.head_params = {**self.defaults, **head_params}

    def total_epochs(self) -> int:
        return self.epochs

    def build_module(self, embeddings: np.ndarray):
        import importlib

        module_name, _, class_name = self.module_path.partition(":")
        module_class = getattr(importlib.import_module(module_name), class_name)
        return module_class(embeddings.shape[1], self.n_clusters, **self.head_params, **self.training)

    def fit(self, embeddings: np.ndarray, neighbours: np.ndarray | None = None, logger=None,
            checkpoint_dir=None) -> "HeadClustering":
        """With `checkpoint_dir`, a checkpoint is kept there after every epoch (`last.ckpt`: weights,
        optimiser, schedule and the data's random state) and a run that finds one resumes from it."""
        import pytorch_lightning as pl
        import torch
        from pytorch_lightning.callbacks import TQDMProgressBar

        from lightning_modules.clustering.heads.data import EmbeddingPairsDataModule
        from lightning_modules.core.jobs import on_terminal
        from lightning_modules.core.training import step_log

        n = len(embeddings)
        if not 2 <= self.n_clusters <= n:
            raise ValueError(f"clustering.k: K={self.n_clusters} must be between 2 and the number of samples ({n})")
        if self.needs_neighbours:
            if neighbours is None:
                raise ValueError(f"{type(self).__name__} needs the kNN graph of the embeddings")
            neighbours = neighbours[:, : self.knn_k] if self.knn_k else neighbours
        else:
            neighbours = None
        pl.seed_everything(self.seed, workers=True, verbose=False)
        datamodule = EmbeddingPairsDataModule(embeddings, neighbours, self.batch_size, self.seed)
        module = self.build_module(embeddings)
        steps_per_epoch = max(1, n // datamodule.batch_size)
        progress_bar = on_terminal(self.progress)
        total_steps = min(self.max_steps or math.inf, self.total_epochs() * steps_per_epoch)
        loss_entries = total_steps * module.hparams.n_heads * datamodule.batch_size * self.n_clusters
        compile_worth_it = loss_entries >= COMPILE_MIN_LOSS_ENTRIES and not torch.cuda.is_available()
        if compile_worth_it and hasattr(module, "compile_step"):
            module.compile_step()
        callbacks = ([TQDMProgressBar(refresh_rate=max(1, steps_per_epoch))] if progress_bar
                     else [step_log(total_steps, metric="train/loss_mean_over_heads")])
        resume_from = None
        if checkpoint_dir is not None:
            from lightning_modules.core.training import resumable, run_identity

            identity = run_identity(module, embeddings, neighbours, seed=self.seed, batch_size=self.batch_size,
                                    epochs=self.total_epochs(), max_steps=self.max_steps)
            checkpointing, resume_from = resumable(checkpoint_dir, identity, every_n_epochs=1)
            callbacks += checkpointing
        trainer = pl.Trainer(
            max_epochs=self.total_epochs(),
            max_steps=self.max_steps or -1,
            accelerator="auto",
            devices=1,
            logger=logger if logger is not None else False,
            enable_checkpointing=checkpoint_dir is not None,
            enable_model_summary=False,
            enable_progress_bar=progress_bar,
            callbacks=callbacks,
            log_every_n_steps=max(1, min(50, steps_per_epoch)),
            deterministic=True,
        )
        with warnings.catch_warnings():
            # in-memory tensors: worker processes would only add overhead
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # resuming: it holds last.ckpt
            started = time.perf_counter()
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        self.seconds_ = {"train": time.perf_counter() - started}
        self.head_losses_ = module.selection_losses().cpu().numpy().astype(np.float64)
        self.selected_head_ = module.selected_head()
        keep_probs = n * self.n_clusters <= PROBS_MAX_ENTRIES
        top2, probs = [], []
        for chunk in module.head_probabilities(datamodule.embeddings, self.selected_head_):
            chunk = chunk.numpy()
            top2.append(top_two(chunk))
            if keep_probs:
                probs.append(chunk)
        self.top2_ = np.concatenate(top2)
        self.probs_ = np.concatenate(probs) if keep_probs else None
        self.labels_ = self.top2_[:, 0].copy()
        self.seconds_["assign"] = time.perf_counter() - started - self.seconds_["train"]
        self.train_loss_ = float(self.head_losses_[self.selected_head_])
        log.info("kept head %d of %d (lowest selection loss %.4f)", self.selected_head_, len(self.head_losses_),
                 self.train_loss_)
        return self

    def fit_predict(self, embeddings: np.ndarray, neighbours: np.ndarray | None = None, logger=None,
                    checkpoint_dir=None) -> np.ndarray:
        return self.fit(embeddings, neighbours, logger, checkpoint_dir).labels_


class TEMIClustering(HeadClustering):
    SETTINGS_BASE = "mlp_head"
    SETTINGS = {
        # TEMI-official main_args.py: --norm_last_layer False, --freeze_last_layer 1
        "freeze_last_layer": {"type": "integer", "minimum": 0, "default": 1,
            "description": "epochs without updates to the last layer"},
        "beta": {"type": "number", "exclusiveMinimum": 0, "default": 0.6},
        "teacher_momentum": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.996},
        "prior_momentum": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.9},
        "norm_last_layer": {"type": "boolean", "default": False,
            "description": "fix the last layer's per-cluster gain at 1 (cosine logits)"},
    }

    module_path = "lightning_modules.clustering.heads.temi:TEMI"


class SCANClustering(HeadClustering):
    """`epochs` of SCAN, then `self_label_epochs` of self-labelling (0 by default)."""

    SETTINGS_BASE = "mlp_head"
    SETTINGS = {
        "entropy_weight": {"type": "number", "minimum": 0, "default": 5.0},
        "self_label_epochs": {"type": "integer", "minimum": 0, "default": 0,
            "description": "epochs of self-labelling after the SCAN epochs"},
        "confidence_threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.99},
    }

    module_path = "lightning_modules.clustering.heads.scan:SCAN"
    selection_rule = "lowest mean SCAN loss over the last clustering epoch, before self-labelling"

    def total_epochs(self) -> int:
        return self.epochs + self.head_params.get("self_label_epochs", 0)


class SinkhornClustering(HeadClustering):
    SETTINGS_BASE = "mlp_head"
    SETTINGS = {
        "epsilon": {"type": "number", "exclusiveMinimum": 0, "default": 0.05},
        "sinkhorn_iterations": {"type": "integer", "minimum": 1, "default": 3},
    }

    module_path = "lightning_modules.clustering.heads.sinkhorn:Sinkhorn"


class DECClustering(HeadClustering):
    SETTINGS_BASE = "head_training"
    SETTINGS = {
        "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.001, "description": "scaled by batch_size / 256"},
        "n_heads": {"type": "integer", "minimum": 1, "default": 1},
        "alpha": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
        "prior_weight": {"type": "number", "minimum": 0, "default": 1.0},
    }

    module_path = "lightning_modules.clustering.heads.dec:DEC"
    needs_neighbours = False
    defaults = {"n_heads": SETTINGS["n_heads"]["default"]}

    def build_module(self, embeddings: np.ndarray):
        from lightning_modules.clustering.kmeans import LloydKMeans

        n_heads = self.head_params.get("n_heads", 1)
        # one k-means restart per head, each from its own seed: the heads start from different optima
        initial = np.stack([LloydKMeans(self.n_clusters, seed=self.seed * 1000 + h, n_init=1).fit(embeddings)
                            .cluster_centers_ for h in range(n_heads)])
        self.head_params = {**self.head_params, "initial_centroids": initial}
        return super().build_module(embeddings)
