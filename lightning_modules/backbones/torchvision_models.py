"""`torchvision/<name>[:<weights>]` (e.g. torchvision/resnet50:IMAGENET1K_V2): the features before the
classifier."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lightning_modules.backbones.preprocess import PreprocessConfig, TensorPreprocess
from lightning_modules.backbones.weights import load_state_dict, missing

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSIFIER_ATTRIBUTES = ("fc", "classifier", "heads", "head")


def build(name: str, weights: str | None = None, allow_download: bool = False, pretrained: bool = True):
    import torch
    import torchvision

    model_name, _, tag = name.partition(":")
    model = torchvision.models.get_model(model_name, weights=None)
    config = PreprocessConfig((224, 224), 256, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    if weights:
        model.load_state_dict(load_state_dict(weights))
    elif pretrained and tag:
        entry = torchvision.models.get_model_weights(model_name)[tag]
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
        if not cached.exists():
            if not allow_download:
                raise missing(f"torchvision/{name}", str(cached),
                              f"python -c \"import torchvision; torchvision.models.get_model('{model_name}', weights='{tag}')\"")
            torch.hub.load_state_dict_from_url(entry.url, progress=True)
        model.load_state_dict(load_state_dict(cached))
        preset = entry.transforms()
        config = PreprocessConfig((preset.crop_size[0],) * 2, preset.resize_size[0], tuple(preset.mean),
                                  tuple(preset.std), preset.interpolation.value)
    for attribute in CLASSIFIER_ATTRIBUTES:
        if isinstance(getattr(model, attribute, None), nn.Module):
            setattr(model, attribute, nn.Identity())
            break
    return model, TensorPreprocess(config)
