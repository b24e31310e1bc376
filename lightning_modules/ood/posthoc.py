"""Post-hoc OOD scores on a linear probe (OpenOOD's postprocessors, one small class per score): MSP, energy,
MaxLogit, GEN and ViM. Each reads the probe's logits W f + b (and ViM its features f); higher = more ID.

`fit` takes the shared probe that the `ood_probe` rule trained once per ID dataset x backbone x label source
(`probe=`), or trains its own on `labels` (tests, notebooks)."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from scipy.special import logsumexp, softmax

from lightning_modules.ood.base import OODScorer, known_labels
from lightning_modules.ood.probe import Probe, train_probe


class ProbeScore(OODScorer):
    score_name: str

    def __init__(self, temperature: float = 1.0, **probe_options):
        self.temperature = temperature
        self.probe_options = probe_options  # for a probe trained here: train_probe's keywords

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, probe: Probe | None = None,
            **context) -> "ProbeScore":
        if probe is None:
            probe = train_probe(embeddings, known_labels(labels, f"probe-{self.score_name}"), **self.probe_options)
        self.probe_ = probe
        self.train_loss_ = probe.train_loss
        self.setup(probe.features(embeddings))
        return self

    def setup(self, train_features: np.ndarray) -> None:
        """What a score needs from the ID training features besides the probe (ViM's principal space)."""

    def score(self, x: np.ndarray) -> np.ndarray:
        features = self.probe_.features(x)
        return self.from_logits(features @ self.probe_.weight.T + self.probe_.bias, features)

    @abstractmethod
    def from_logits(self, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(N, C) logits and (N, D) features -> (N,) scores."""


class MSP(ProbeScore):
    """max_c softmax(logits / T)_c (Hendrycks & Gimpel 2017)."""

    score_name = "msp"

    def from_logits(self, logits, features):
        return softmax(logits / self.temperature, axis=1).max(axis=1)


class Energy(ProbeScore):
    """T logsumexp(logits / T), the negative free energy (Liu et al. 2020; OpenOOD `ebo`)."""

    score_name = "energy"

    def from_logits(self, logits, features):
        return self.temperature * logsumexp(logits / self.temperature, axis=1)


class MaxLogit(ProbeScore):
    """max_c logits_c (Hendrycks et al. 2022; OpenOOD `mls`); the temperature does not enter."""

    score_name = "maxlogit"

    def from_logits(self, logits, features):
        return logits.max(axis=1)


class GEN(ProbeScore):
    """-sum over the `top` largest softmax probabilities of p^gamma (1 - p)^gamma (Liu et al., CVPR 2023;
    OpenOOD `gen_postprocessor.py`, gamma 0.1, M 100)."""

    score_name = "gen"

    def __init__(self, gamma: float = 0.1, top: int = 100, **options):
        super().__init__(**options)
        self.gamma, self.top = gamma, top

    def from_logits(self, logits, features):
        probabilities = np.sort(softmax(logits, axis=1), axis=1)[:, -self.top:]
        return -(probabilities ** self.gamma * (1 - probabilities) ** self.gamma).sum(axis=1)


class ViM(ProbeScore):
    """Virtual-logit matching (Wang et al., CVPR 2022; OpenOOD `vim_postprocessor.py`): energy minus alpha
    times the norm of the feature's residual outside the `dim` principal directions of the ID training
    features, both taken about the origin u = -pinv(W) b; alpha matches the residual's mean to the mean max
    logit on the ID training set. `dim` None: half the feature dimension."""

    score_name = "vim"

    def __init__(self, dim: int | None = None, **options):
        super().__init__(**options)
        self.dim = dim

    def setup(self, train_features):
        n_dims = train_features.shape[1]
        dim = n_dims // 2 if self.dim is None else self.dim
        if not 1 <= dim < n_dims:
            raise ValueError(f"ood.vim.dim = {dim} must lie in 1..{n_dims - 1}: the principal space must be smaller "
                             f"than the probe's feature dimension ({n_dims})")
        weight, bias = self.probe_.weight, self.probe_.bias
        self.origin_ = -np.linalg.pinv(weight) @ bias
        centred = train_features - self.origin_
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(centred))
        self.residual_space_ = eigenvectors[:, np.argsort(-eigenvalues)[dim:]]
        train_logits = train_features @ weight.T + bias
        self.alpha_ = train_logits.max(axis=1).mean() / self.residual_norm(train_features).mean()

    def residual_norm(self, features: np.ndarray) -> np.ndarray:
        return np.linalg.norm((features - self.origin_) @ self.residual_space_, axis=1)

    def from_logits(self, logits, features):
        return logsumexp(logits, axis=1) - self.alpha_ * self.residual_norm(features)
