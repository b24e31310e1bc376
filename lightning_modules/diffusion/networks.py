"""The raw networks F(x_in, c_noise, labels) that EDM's preconditioning wraps, by name (DENOISERS in
`lightning_modules.diffusion`). Each takes `n_classes` (None = unconditional; otherwise labels 0..n_classes−1
plus n_classes = the null class of classifier-free guidance) and its own options from `diffusion.network`."""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_modules.diffusion import DDPMPP_CHANNELS


def _null_class_embedding(n_classes: int | None, dims: int) -> nn.Embedding | None:
    return None if n_classes is None else nn.Embedding(n_classes + 1, dims)


class NoiseEmbedding(nn.Module):
    """EDM's PositionalEmbedding (`training/networks.py`, endpoint=True) of c_noise, then a two-layer MLP."""

    def __init__(self, dims: int, frequencies: int = 32, max_positions: int = 10_000):
        super().__init__()
        exponents = torch.arange(frequencies, dtype=torch.float32) / (frequencies - 1)
        self.register_buffer("frequencies", (1 / max_positions) ** exponents, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies, dims), nn.SiLU(), nn.Linear(dims, dims))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        angles = c_noise.float()[:, None] * self.frequencies[None]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


class DenoisingMLP(nn.Module):
    """A residual MLP on the flattened image for small images (the 8×8 digits on CPU): each block adds the
    noise level's and the label's embedding before a pre-norm SiLU MLP."""

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int | None = None, hidden: int = 256,
                 blocks: int = 3, dropout: float = 0.0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        pixels = math.prod(self.image_shape)
        self.embed_noise = NoiseEmbedding(hidden)
        self.embed_label = _null_class_embedding(n_classes, hidden)
        self.input = nn.Linear(pixels, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Dropout(dropout),
                          nn.Linear(2 * hidden, hidden))
            for _ in range(blocks))
        self.output = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, pixels))
        nn.init.zeros_(self.output[1].weight)  # start at F = 0, i.e. D = c_skip·x (as EDM zero-inits its last conv)
        nn.init.zeros_(self.output[1].bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        condition = self.embed_noise(c_noise)
        if self.embed_label is not None and labels is not None:
            condition = condition + self.embed_label(labels)
        hidden = self.input(x.flatten(1))
        for block in self.blocks:
            hidden = hidden + block(hidden + condition)
        return self.output(hidden).view(len(x), *self.image_shape)


class DDPMppUNet(nn.Module):
    """A DDPM++-like UNet (EDM's CIFAR-10 network: 3 levels of 256 channels, 4 residual blocks per level,
    self-attention at 16×16, dropout 0.13) built from diffusers' UNet2DModel; c_noise enters its sinusoidal
    time embedding, labels its class embedding (with the null class)."""

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int | None = None,
                 channels: tuple[int, ...] = DDPMPP_CHANNELS, layers_per_block: int = 4,
                 attention_resolutions: tuple[int, ...] = (16,), dropout: float = 0.13):
        super().__init__()
        from diffusers import UNet2DModel

        from lightning_modules.diffusion import check_image_size

        image_channels, size, _ = image_shape
        check_image_size(size, len(channels))
        resolutions = [size // 2**level for level in range(len(channels))]
        down = tuple("AttnDownBlock2D" if r in attention_resolutions else "DownBlock2D" for r in resolutions)
        up = tuple("AttnUpBlock2D" if r in attention_resolutions else "UpBlock2D" for r in reversed(resolutions))
        self.unet = UNet2DModel(
            sample_size=size, in_channels=image_channels, out_channels=image_channels,
            block_out_channels=tuple(channels), layers_per_block=layers_per_block, down_block_types=down,
            up_block_types=up, dropout=dropout, norm_num_groups=min(32, channels[0]),
            num_class_embeds=None if n_classes is None else n_classes + 1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x, c_noise, class_labels=labels).sample
