"""(anchor, neighbour) pairs from a kNN graph, the training data of the clustering heads and of the
self-distillation OOD scorer: one module below both stages, as neighbours.py is for the search itself.

The embeddings stay as given — typically the artifact's memory map, float16 on disk — and every batch is
gathered from them (`io.gather_rows`: read, not mapped, so random batches do not map the whole file) and
converted to float32 on its own, so no stage copies the whole artifact. Batches are
gathered with one indexing operation (`__getitems__`) instead of per-sample calls: on small embeddings the
per-sample Python overhead would dominate a training step."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lightning_modules.core.batches import whole_batches
from lightning_modules.core.io import gather_rows
from lightning_modules.search.rows import float_rows


def unit_rows(x: np.ndarray, device="cpu") -> torch.Tensor:
    """float32 L2-normalised rows (cosine geometry, as the kNN views are chosen)."""
    return F.normalize(torch.from_numpy(float_rows(x)).to(device), dim=-1)


class NeighbourPairs(Dataset):
    """Item i -> (x_i, x_j), j drawn uniformly from i's kNN list anew every time i is fetched (without a graph,
    as heads that ignore neighbours (DEC) want: (x_i, x_i))."""

    def __init__(self, embeddings: np.ndarray, neighbours: np.ndarray | None, generator: torch.Generator):
        self.embeddings = embeddings
        self.neighbours = neighbours
        self.generator = generator

    def __len__(self) -> int:
        return len(self.embeddings)

    def as_tensor(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(float_rows(rows))

    def rows(self, index: np.ndarray) -> torch.Tensor:
        return self.as_tensor(gather_rows(self.embeddings, index))

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = np.asarray(indices, dtype=np.int64)
        anchors = self.rows(index)
        if self.neighbours is None:
            return anchors, anchors
        pick = torch.randint(0, self.neighbours.shape[1], (len(index),), generator=self.generator).numpy()
        return anchors, self.rows(gather_rows(self.neighbours, index)[np.arange(len(index)), pick])


class NeighbourPairsAndNegatives(NeighbourPairs):
    """Item i -> (x_i, a random one of its kNN, a random negative), every row L2-normalised."""

    def __init__(self, embeddings, neighbours: np.ndarray, negatives, generator: torch.Generator):
        super().__init__(embeddings, neighbours, generator)
        self.negatives = negatives

    def as_tensor(self, rows: np.ndarray) -> torch.Tensor:
        return unit_rows(rows)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        anchors, neighbours = super().__getitems__(indices)
        negative = torch.randint(0, len(self.negatives), (len(indices),), generator=self.generator).numpy()
        return anchors, neighbours, self.as_tensor(gather_rows(self.negatives, np.sort(negative)))


def pairs_loader(pairs: NeighbourPairs, batch_size: int, order: torch.Generator) -> DataLoader:
    """Shuffled batches of pairs in `order`; the last partial batch is dropped (a handful of samples would skew
    batch statistics); no worker processes (one indexing operation per batch: workers would only add overhead)."""
    return DataLoader(pairs, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=whole_batches,
                      generator=order, num_workers=0)
