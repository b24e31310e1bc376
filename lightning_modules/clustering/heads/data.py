"""The DataModule every head shares: embeddings and their kNN graph, served as (anchor, neighbour) pairs.

The embeddings stay as given — typically the artifact's memory map, float16 on disk — and every batch is
gathered from them and converted to float32 on its own, so no stage copies the whole artifact."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_modules.seeded_data import SeededDataModule


def _as_batch(batch):
    return batch  # __getitems__ already returns whole tensors


class NeighbourPairs(Dataset):
    """Item i -> (x_i, x_j), j drawn uniformly from i's kNN list anew every time i is fetched.

    Batches are gathered with one indexing operation (`__getitems__`) instead of per-sample calls: on
    small embeddings the per-sample Python overhead would dominate a training step.
    """

    def __init__(self, embeddings: np.ndarray, neighbours: np.ndarray | None, generator: torch.Generator):
        self.embeddings = embeddings
        self.neighbours = neighbours
        self.generator = generator

    def __len__(self) -> int:
        return len(self.embeddings)

    def rows(self, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.embeddings[index], dtype=np.float32))

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.asarray(indices, dtype=np.int64)
        anchors = self.rows(index)
        if self.neighbours is None:  # heads that ignore neighbours (DEC) see each anchor twice
            return anchors, anchors
        pick = torch.randint(0, self.neighbours.shape[1], (len(index),), generator=self.generator).numpy()
        return anchors, self.rows(self.neighbours[index, pick])


class EmbeddingPairsDataModule(SeededDataModule):
    def __init__(self, embeddings: np.ndarray, neighbours: np.ndarray | None, batch_size: int, seed: int = 0):
        # two checkpointed streams: batch order and neighbour picks
        super().__init__(seed, streams=("order", "pairs"))
        self.embeddings = embeddings  # gathered batch by batch (NeighbourPairs.rows)
        self.neighbours = neighbours  # (N, k) int32, usually memory-mapped: rows gathered per batch too
        self.batch_size = min(batch_size, len(self.embeddings))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            NeighbourPairs(self.embeddings, self.neighbours, self.generators["pairs"]),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,  # a last batch of a handful of samples would skew batch statistics
            collate_fn=_as_batch,
            generator=self.generators["order"],
            num_workers=0,  # one indexing operation per batch: worker processes would only add overhead
        )
