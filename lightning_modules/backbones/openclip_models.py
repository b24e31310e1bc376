"""`openclip/<arch>[:<pretrained>]` (e.g. openclip/ViT-B-32:openai): the image tower's embedding. The text
tower stays on the returned module (`.clip`, `.tokenizer`) for zero-shot scoring."""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.backbones.preprocess import PreprocessConfig, TensorPreprocess
from lightning_modules.backbones.weights import first_existing, hub_cache_dir, hub_snapshot, missing

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class OpenCLIPImageEncoder(nn.Module):
    def __init__(self, clip: nn.Module, tokenizer):
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(images)


def build(name: str, weights: str | None = None, allow_download: bool = False, pretrained: bool = True):
    import open_clip

    arch, _, tag = name.partition(":")
    source = weights
    if source is None and pretrained and tag:
        repo = open_clip.get_pretrained_cfg(arch, tag).get("hf_hub", "").strip("/")
        snapshot = hub_snapshot(repo, allow_download) if repo else None
        source = first_existing(snapshot, WEIGHT_FILES) if snapshot else None
        if source is None:
            raise missing(f"openclip/{name}", f"{hub_cache_dir()} for {repo or arch + ':' + tag}",
                          f"python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{tag}')\"")
    clip = open_clip.create_model(arch, pretrained=str(source) if source else None)
    cfg = clip.visual.preprocess_cfg
    config = PreprocessConfig(tuple(cfg["size"]), int(cfg["size"][0]), tuple(cfg["mean"]), tuple(cfg["std"]),
                              cfg.get("interpolation", "bicubic"))
    return OpenCLIPImageEncoder(clip, open_clip.get_tokenizer(arch)), TensorPreprocess(config)
