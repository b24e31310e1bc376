"""`hf/<repo_id>` (e.g. hf/facebook/dinov2-small): a transformers AutoModel, CLS or mean pooled."""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.backbones.preprocess import PreprocessConfig, TensorPreprocess
from lightning_modules.backbones.weights import hub_cache_dir, missing

POOLINGS = ("cls", "mean")


class PooledHFModel(nn.Module):
    def __init__(self, model: nn.Module, pooling: str):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling '{pooling}' is not one of {', '.join(POOLINGS)}")
        self.model, self.pooling = model, pooling

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.model(pixel_values=images).last_hidden_state
        return tokens[:, 0] if self.pooling == "cls" else tokens[:, 1:].mean(1)


def _size(processor_size, default: int) -> int:
    """An image processor's size: a number, a dict or a SizeDict (transformers 5) with shortest_edge or height."""
    if processor_size is None or isinstance(processor_size, (int, float)):
        return int(processor_size or default)
    return int(processor_size.get("shortest_edge") or processor_size.get("height") or default)


def build(name: str, weights: str | None = None, allow_download: bool = False, pretrained: bool = True,
          pooling: str = "cls"):
    """`weights` may name a local folder holding the model (save_pretrained's layout)."""
    from transformers import AutoImageProcessor, AutoModel

    source = weights or name
    try:
        model = AutoModel.from_pretrained(source, local_files_only=not allow_download)
    except OSError:
        raise missing(f"hf/{name}", f"{hub_cache_dir()} for {name}",
                      f"python -c \"import transformers; transformers.AutoModel.from_pretrained('{name}')\"") from None
    try:
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=not allow_download)
        crop = _size(getattr(processor, "crop_size", None), model.config.image_size)
        resize = _size(getattr(processor, "size", None), crop)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    except OSError:  # a model saved without its processor: the model's input size, ImageNet statistics
        crop = resize = int(model.config.image_size)
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    config = PreprocessConfig((crop, crop), resize, mean, std, "bicubic")
    return PooledHFModel(model, pooling), TensorPreprocess(config)
