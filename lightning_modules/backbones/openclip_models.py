"""`openclip/<arch>[:<pretrained>][@<space>]` (e.g. openclip/ViT-L-14:openai, openclip/ViT-L-14:openai@pre-projection):
the image tower's embedding in one of two spaces, each its own embedding artifact:

- `projected` (default): `encode_image`, CLIP's joint image-text space (768-d for ViT-L/14);
- `pre-projection`: the image tower without its last projection (1,024-d for ViT-L/14), the features that
  plp-official-tmlr2024 probes (`model_builders/openclip.py` `build_openclip_visual` sets `backbone.proj = None`).
  The projection stays on the module (`projection`), so zero-shot scores and PLP's pseudo-labels are computed in
  the joint space, as `build_openclip_text` + `logit_evaluation.py` do.

The text tower stays on the returned module (`.clip`, `.tokenizer`) for zero-shot scoring."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lightning_modules.backbones.preprocess import PreprocessConfig, TensorPreprocess
from lightning_modules.backbones.weights import first_existing, hub_cache_dir, hub_snapshot, missing

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
SPACES = ("projected", "pre-projection")
SPACE_MARK = "@"


class OpenCLIPImageEncoder(nn.Module):
    def __init__(self, clip: nn.Module, tokenizer, space: str = "projected"):
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.space = space
        self.projection = None  # (pre-projection dims, joint dims) when the features are taken before it
        if space == "pre-projection":
            projection = getattr(clip.visual, "proj", None)
            if not isinstance(projection, torch.Tensor):
                raise ValueError(f"openclip: the image tower {type(clip.visual).__name__} has no separate projection "
                                 f"matrix (`visual.proj`); use the projected space")
            self.projection = nn.Parameter(projection.detach().clone(), requires_grad=False)
            clip.visual.proj = None  # encode_image now stops before the projection, as plp-official's backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(images)

    def to_joint_space(self, embeddings: np.ndarray) -> np.ndarray:
        """Image embeddings of this backbone -> CLIP's joint image-text space (float64, not normalised)."""
        embeddings = np.asarray(embeddings, dtype=np.float64)
        if self.projection is None:
            return embeddings
        return embeddings @ self.projection.detach().double().cpu().numpy()


def parse_name(name: str) -> tuple[str, str, str]:
    """`ViT-L-14:openai@pre-projection` -> ("ViT-L-14", "openai", "pre-projection"); the space defaults to projected."""
    model, _, space = name.partition(SPACE_MARK)
    arch, _, tag = model.partition(":")
    space = space or "projected"
    if space not in SPACES:
        raise ValueError(f"backbone 'openclip/{name}': space '{space}'; allowed: {', '.join(SPACES)}")
    return arch, tag, space


def build(name: str, weights: str | None = None, allow_download: bool = False, pretrained: bool = True):
    import open_clip

    arch, tag, space = parse_name(name)
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
    return OpenCLIPImageEncoder(clip, open_clip.get_tokenizer(arch), space), TensorPreprocess(config)
