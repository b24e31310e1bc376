"""Per-image preprocessing on tensors: datasets deliver float (C, H, W) images in [0, 1]; each backbone
family turns its model's own preprocessing config into one of these."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PreprocessConfig:
    size: tuple[int, int]  # (H, W) the model sees
    resize: int  # shorter side before the centre crop
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    channels: int = 3

    @classmethod
    def from_crop_pct(cls, size, crop_pct: float, **rest) -> "PreprocessConfig":
        size = (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))
        return cls(size=size, resize=int(size[0] / crop_pct), **rest)


class TensorPreprocess(nn.Module):
    """Grayscale -> `channels`, resize the shorter side, centre-crop, normalise."""

    def __init__(self, config: PreprocessConfig):
        super().__init__()
        self.config = config
        from torchvision.transforms import InterpolationMode

        self.interpolation = InterpolationMode(config.interpolation)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        config = self.config
        if image.shape[0] == 1 and config.channels == 3:
            image = image.expand(3, -1, -1)
        image = F.resize(image, [config.resize], interpolation=self.interpolation, antialias=True)
        image = F.center_crop(image, list(config.size))
        return F.normalize(image, list(config.mean), list(config.std))

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in asdict(self.config).items())
