"""The DataModule every head shares: embeddings and their kNN graph, served as (anchor, neighbour) pairs
(lightning_modules/search/pairs.py)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader

from lightning_modules.search.pairs import NeighbourPairs, pairs_loader
from lightning_modules.core.seeded_data import SeededDataModule


class EmbeddingPairsDataModule(SeededDataModule):
    def __init__(self, embeddings: np.ndarray, neighbours: np.ndarray | None, batch_size: int, seed: int = 0):
        # two checkpointed streams: batch order and neighbour picks
        super().__init__(seed, streams=("order", "pairs"))
        self.embeddings = embeddings  # gathered batch by batch (NeighbourPairs.rows)
        self.neighbours = neighbours  # (N, k) int32, usually memory-mapped: rows gathered per batch too
        self.batch_size = min(batch_size, len(self.embeddings))

    def train_dataloader(self) -> DataLoader:
        return pairs_loader(NeighbourPairs(self.embeddings, self.neighbours, self.generators["pairs"]),
                            self.batch_size, self.generators["order"])
