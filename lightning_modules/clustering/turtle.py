"""TURTLE (Gadetsky, Jiang, Brbić, ICML 2024): the labelling of the data whose linear classifiers, in one or
several representation spaces, have the largest margin — written after mlbio-epfl/turtle `run_turtle.py`.

- Task encoder: one weight-normalised linear map per space (d_s -> K); the labelling is the mean over spaces of
  their softmaxes.
- Per outer step, on a batch: fresh linear classifiers per space ("cold start"; warm_start keeps them) take
  `inner_steps` Adam steps on the cross-entropy to the (detached) labelling; then the task encoder takes one
  Adam step on Σ_s CE(classifier_s(z_s) [detached], labelling) − γ Σ_s H(mean over the batch of space s's
  softmax).
- Assignments: argmax of the labelling. Features are used as given (the official code does not normalise).

An estimator like k-means (`fit_predict`), not a Lightning head: the bilevel loop (a fresh inner optimiser every
outer step) is not one training step of one module. The extra representation spaces come as `spaces`."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from lightning_modules.core.softmax import soft_cross_entropy, softmax

log = logging.getLogger(__name__)


def task_labels(encoders, spaces: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The labelling (mean of the spaces' softmaxes) and each space's softmax."""
    per_space = [softmax(encoder(z), 1) for encoder, z in zip(encoders, spaces)]
    return sum(per_space) / len(per_space), per_space


def outer_loss(classifiers, encoders, spaces: list[torch.Tensor], gamma: float):
    """Σ_s CE(W_s z_s (no gradient), labels) − γ Σ_s H(mean_batch softmax_s): the task encoder's loss."""
    labels, per_space = task_labels(encoders, spaces)
    prediction_error = sum(soft_cross_entropy(classifier(z).detach(), labels) for classifier, z in zip(classifiers, spaces))
    entropy = sum(torch.special.entr(p.mean(0)).sum() for p in per_space)
    return prediction_error - gamma * entropy, prediction_error, entropy


class TURTLE:
    """`TURTLE(n_clusters, seed, gamma=10, outer_steps=6000, inner_steps=10, ...)`: defaults (SETTINGS) from run_turtle.py."""

    SETTINGS_BASE = "grid"
    SETTINGS = {
        "spaces": {
            "type": "array",
            "default": [],
            "items": {"type": "array", "minItems": 2, "items": {"type": ["string", "object"]}},
            "description": (
                "extra settings, each a list of >= 2 backbones (specs or {spec, ...}) whose embeddings one run reads "
                "together")},
        "gamma": {"type": "number", "minimum": 0, "default": 10.0,
            "description": "weight of the entropy of the mean labelling"},
        "outer_steps": {"type": "integer", "minimum": 1, "default": 6000, "description": "task-encoder steps (T)"},
        "inner_steps": {"type": "integer", "minimum": 1, "default": 10,
            "description": "linear-classifier steps per outer step (M)"},
        "inner_lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.001},
        "outer_lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.001},
        "batch_size": {"type": "integer", "minimum": 2, "default": 10000},
        "warm_start": {"type": "boolean", "default": False,
            "description": "keep the inner classifiers between outer steps"},
    }

    DEFAULTS = {name: setting["default"] for name, setting in SETTINGS.items()}

    def __init__(self, n_clusters: int, seed: int = 0, gamma: float = DEFAULTS["gamma"],
                 outer_steps: int = DEFAULTS["outer_steps"], inner_steps: int = DEFAULTS["inner_steps"],
                 inner_lr: float = DEFAULTS["inner_lr"], outer_lr: float = DEFAULTS["outer_lr"],
                 batch_size: int = DEFAULTS["batch_size"], warm_start: bool = DEFAULTS["warm_start"],
                 device: str | None = None):
        self.n_clusters, self.seed, self.gamma = n_clusters, seed, gamma
        self.outer_steps, self.inner_steps = outer_steps, inner_steps
        self.inner_lr, self.outer_lr, self.batch_size, self.warm_start = inner_lr, outer_lr, batch_size, warm_start
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    def _inner(self, dims):
        classifiers = [nn.Linear(d, self.n_clusters).to(self.device) for d in dims]
        optimiser = torch.optim.Adam([p for c in classifiers for p in c.parameters()], lr=self.inner_lr)
        return classifiers, optimiser

    def fit_predict(self, embeddings: np.ndarray, spaces: list[np.ndarray] | None = None, **_) -> np.ndarray:
        """`embeddings` is the first space; `spaces` the others (same images, same order)."""
        arrays = [embeddings, *(spaces or [])]
        if len({len(a) for a in arrays}) != 1:
            raise ValueError(f"TURTLE's representation spaces embed different numbers of images "
                             f"({', '.join(str(len(a)) for a in arrays)}); they must embed the same images")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        data = [torch.from_numpy(np.asarray(a, dtype=np.float32)).to(self.device) for a in arrays]
        dims, count = [d.shape[1] for d in data], len(data[0])
        batch = min(self.batch_size, count)
        encoders = [nn.utils.parametrizations.weight_norm(nn.Linear(d, self.n_clusters)).to(self.device) for d in dims]
        optimiser = torch.optim.Adam([p for e in encoders for p in e.parameters()], lr=self.outer_lr)
        classifiers, inner_optimiser = self._inner(dims)
        self.loss_curve_ = []
        for step in range(self.outer_steps):
            index = torch.from_numpy(rng.choice(count, size=batch, replace=False)).to(self.device)
            spaces_batch = [d[index] for d in data]
            if not self.warm_start:
                classifiers, inner_optimiser = self._inner(dims)
            with torch.no_grad():
                targets, _ = task_labels(encoders, spaces_batch)
            for _ in range(self.inner_steps):
                inner_optimiser.zero_grad()
                loss = sum(soft_cross_entropy(c(z), targets) for c, z in zip(classifiers, spaces_batch))
                loss.backward()
                inner_optimiser.step()
            optimiser.zero_grad()
            total, error, entropy = outer_loss(classifiers, encoders, spaces_batch, self.gamma)
            total.backward()
            optimiser.step()
            self.loss_curve_.append(float(total.detach()))
            if (step + 1) % max(1, self.outer_steps // 10) == 0:
                log.info("step %d/%d: prediction error %.4f, entropy %.4f", step + 1, self.outer_steps,
                         float(error.detach()), float(entropy.detach()))
        with torch.no_grad():
            labels, _ = task_labels(encoders, data)
        self.probs_ = labels.cpu().numpy()
        self.train_loss_ = float(np.mean(self.loss_curve_[-max(1, len(self.loss_curve_) // 20):]))
        self.top2_ = np.argsort(-self.probs_, axis=1)[:, :2]
        return self.probs_.argmax(1)
