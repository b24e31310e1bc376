"""`random/<dims>`: fixed random ReLU features of the flattened image, ReLU(x·W/√d) with W ~ N(0, 1) drawn from
`seed` (default 0). Needs no weights: a cheap second, non-linear representation (random features approximate
an arc-cosine kernel), e.g. for TURTLE's multi-space runs on small images."""

from __future__ import annotations

import torch
from torch import nn


class RandomReLUFeatures(nn.Module):
    def __init__(self, dims: int, seed: int = 0):
        super().__init__()
        self.dims, self.seed = dims, seed
        self.register_buffer("projection", torch.empty(0), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flatten(1)
        if self.projection.shape != (x.shape[1], self.dims):  # drawn for the input size, the same on every call
            generator = torch.Generator().manual_seed(self.seed)
            self.projection = torch.randn(x.shape[1], self.dims, generator=generator).to(x.device)
        return torch.relu(x @ self.projection.to(x.dtype) / x.shape[1] ** 0.5)


def build(name: str = "", weights: str | None = None, seed: int = 0, **ignored):
    """`allow_download`, `pretrained` and `pooling` mean nothing here and are ignored."""
    if not name.isdigit() or int(name) < 1:
        raise ValueError(f"backbone 'random/{name}': give the number of features, e.g. random/512")
    if weights:
        raise ValueError("backbone 'random' has no weights; remove `weights:` from its entry")
    return RandomReLUFeatures(int(name), seed), nn.Identity()
