"""`zeroshot-msp`: CLIP zero-shot classification over the ID class names (prompts averaged over five
templates), scored by its maximum softmax probability. Needs a backbone with a text tower (openclip/).

Follows plp-official-tmlr2024 `baseline_pseudo_msp_clip.sh` -> `logit_evaluation.py`: the logits are the raw
cosines between the image (in the joint space: a pre-projection backbone's features are projected first) and
the class text embeddings (`clip_label_embeddings(..., logit_scale=False)`), softmax at temperature 1.
`temperature: null` uses the model's learnt logit scale instead (CLIP's 100, this platform's earlier default)."""

from __future__ import annotations

import numpy as np
import torch

from lightning_modules.search.rows import l2_normalise
from lightning_modules.ood.base import OODScorer

TEMPLATES = ("a photo of a {c}.", "a blurry photo of a {c}.", "a photo of many {c}.", "a photo of the large {c}.",
             "a photo of the small {c}.")


def has_text_tower(model) -> bool:
    return hasattr(model, "clip") and hasattr(model, "tokenizer")


def require_text_tower(backbone, backbone_spec: str, scorer: str) -> None:
    if backbone is None or not has_text_tower(backbone):
        raise ValueError(f"OOD scorer '{scorer}' needs a backbone with a text tower (openclip/…); "
                         f"'{backbone_spec}' has none")


def class_text_embeddings(backbone, class_names: list[str] | None, scorer: str) -> tuple[np.ndarray, float]:
    """(C, D) unit text embeddings, one per class (the mean of the unit embeddings of its five prompts, made
    unit again), and the model's logit scale (100 when it has none)."""
    if not class_names:
        raise ValueError(f"OOD scorer '{scorer}' needs the ID class names")
    clip = backbone.clip
    with torch.inference_mode():
        class_embeddings = []
        for name in class_names:
            tokens = backbone.tokenizer([template.format(c=name) for template in TEMPLATES])
            prompts = torch.nn.functional.normalize(clip.encode_text(tokens).float(), dim=-1)
            class_embeddings.append(torch.nn.functional.normalize(prompts.mean(0), dim=0))
        scale = clip.logit_scale.exp().item() if hasattr(clip, "logit_scale") else 100.0
    return torch.stack(class_embeddings).double().numpy(), scale


def joint_space(backbone, embeddings: np.ndarray) -> np.ndarray:
    """The backbone's image embeddings in CLIP's joint image-text space (projected when taken before it)."""
    return backbone.to_joint_space(embeddings) if hasattr(backbone, "to_joint_space") else np.asarray(embeddings)


def zero_shot_labels(embeddings: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The zero-shot class of every joint-space embedding: argmax of its cosine to the class text embeddings
    (PLP's pseudo-labels; plp-official `clip_pseudo_probs(...).argmax`)."""
    return (l2_normalise(embeddings).astype(np.float64) @ text.T).argmax(axis=1)


class ZeroShotMSP(OODScorer):
    def __init__(self, temperature: float | None = 1.0):
        self.temperature = temperature  # None: the model's learnt logit scale

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, backbone=None, backbone_spec: str = "",
            class_names: list[str] | None = None, **context) -> "ZeroShotMSP":
        """Only the class names are used: zero-shot needs no training data."""
        require_text_tower(backbone, backbone_spec, "zeroshot-msp")
        self.text_, scale = class_text_embeddings(backbone, class_names, "zeroshot-msp")
        self.scale_ = 1.0 / self.temperature if self.temperature else scale
        self.backbone_ = backbone
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        x = joint_space(getattr(self, "backbone_", None), x)
        logits = self.scale_ * (l2_normalise(x).astype(np.float64) @ self.text_.T)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return (probabilities / probabilities.sum(axis=1, keepdims=True)).max(axis=1)
