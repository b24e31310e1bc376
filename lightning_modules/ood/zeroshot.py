"""`zeroshot-msp`: CLIP zero-shot classification over the ID class names (prompts averaged over five
templates), scored by its maximum softmax probability. Needs a backbone with a text tower (openclip/)."""

from __future__ import annotations

import numpy as np
import torch

from lightning_modules.clustering.knn import l2_normalise
from lightning_modules.ood.base import OODScorer

TEMPLATES = ("a photo of a {c}.", "a blurry photo of a {c}.", "a photo of many {c}.", "a photo of the large {c}.",
             "a photo of the small {c}.")


def has_text_tower(model) -> bool:
    return hasattr(model, "clip") and hasattr(model, "tokenizer")


class ZeroShotMSP(OODScorer):
    def __init__(self, temperature: float | None = None):
        self.temperature = temperature  # None: the model's learnt logit scale

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, backbone=None, backbone_spec: str = "",
            class_names: list[str] | None = None, **context) -> "ZeroShotMSP":
        """Only the class names are used: zero-shot needs no training data."""
        if backbone is None or not has_text_tower(backbone):
            raise ValueError(f"OOD scorer 'zeroshot-msp' needs a backbone with a text tower (openclip/…); "
                             f"'{backbone_spec}' has none")
        if not class_names:
            raise ValueError("OOD scorer 'zeroshot-msp' needs the ID class names")
        clip = backbone.clip
        with torch.inference_mode():
            class_embeddings = []
            for name in class_names:
                tokens = backbone.tokenizer([template.format(c=name) for template in TEMPLATES])
                prompts = torch.nn.functional.normalize(clip.encode_text(tokens).float(), dim=-1)
                class_embeddings.append(torch.nn.functional.normalize(prompts.mean(0), dim=0))
            self.text_ = torch.stack(class_embeddings).double().numpy()
            scale = clip.logit_scale.exp().item() if hasattr(clip, "logit_scale") else 100.0
        self.scale_ = 1.0 / self.temperature if self.temperature else scale
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        logits = self.scale_ * (l2_normalise(x).astype(np.float64) @ self.text_.T)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return (probabilities / probabilities.sum(axis=1, keepdims=True)).max(axis=1)
