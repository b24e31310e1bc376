"""DataModules whose random streams are checkpointed with the run, shared by every training stage (heads, probes,
self-distillation, diffusion): a run resumed from its last checkpoint draws exactly the batches, neighbours and
negatives an uninterrupted run would have, so it reaches the same result bit for bit on CPU."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class SeededDataModule(pl.LightningDataModule):
    """Named torch Generators (`streams`), seeded from `seed` (the i-th stream with seed + 1,000,003 i), whose
    states go into every checkpoint."""

    def __init__(self, seed: int, streams: tuple[str, ...] = ("order",)):
        super().__init__()
        self.generators = {name: torch.Generator().manual_seed(seed + 1_000_003 * index)
                           for index, name in enumerate(streams)}

    def state_dict(self) -> dict:
        return {name: generator.get_state() for name, generator in self.generators.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, generator in self.generators.items():
            generator.set_state(state[name])


class ShuffledTensors(SeededDataModule):
    """(x, y) tensors in a seeded shuffled order, `batch_size` at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, drop_last: bool = False):
        super().__init__(seed)
        self.x, self.y, self.batch_size, self.drop_last = x, y, min(batch_size, len(x)), drop_last

    def train_dataloader(self):
        from torch.utils.data import DataLoader

        from lightning_modules.core.batches import TensorRows, whole_batches

        return DataLoader(TensorRows(self.x, self.y), batch_size=self.batch_size, shuffle=True,
                          drop_last=self.drop_last, generator=self.generators["order"], collate_fn=whole_batches)
