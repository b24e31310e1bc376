"""What every OOD scorer shares."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class OODScorer(ABC):
    """`fit(train_embeddings, train_labels or None)` -> self; `score(x)` -> (N,) higher = more ID."""

    @abstractmethod
    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, **context) -> "OODScorer":
        ...

    @abstractmethod
    def score(self, x: np.ndarray) -> np.ndarray:
        ...


def known_labels(labels: np.ndarray | None, scorer: str) -> np.ndarray:
    """The labels as int64, or a one-line error when the scorer got none or unknown (-1) ones."""
    if labels is None:
        raise ValueError(f"OOD scorer '{scorer}' needs labels for the ID training data")
    labels = np.asarray(labels, dtype=np.int64)
    if (labels < 0).any():
        raise ValueError(f"OOD scorer '{scorer}': {int((labels < 0).sum())} ID training samples have no label")
    return labels
