"""`pixels`: the raw image, flattened. Needs no weights: the embedded default and the floor every
pretrained backbone has to beat."""

from __future__ import annotations

from torch import nn


def build(name: str = "", weights: str | None = None, **ignored):
    """`allow_download`, `pretrained` and `pooling` mean nothing here and are ignored."""
    if name:
        raise ValueError(f"backbone 'pixels' takes no model name, got 'pixels/{name}'")
    if weights:
        raise ValueError("backbone 'pixels' has no weights; remove `weights:` from its entry")
    # Datasets deliver images already scaled to [0, 1], so there is nothing to preprocess.
    return nn.Flatten(), nn.Identity()
