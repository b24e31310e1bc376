"""Backbone registry: a spec string (`pixels`, later `timm/<model>`, `openclip/<arch>:<tag>`, …) names a
family; `build_backbone(spec) -> (model, transform)` gives a frozen nn.Module in eval mode and the
per-image preprocessing the model expects (a callable on a float (C, H, W) tensor in [0, 1])."""

from __future__ import annotations

from lightning_modules.registry import Registry

BACKBONES = Registry("backbone")
BACKBONES.register("pixels", "lightning_modules.backbones.pixels:build", needs_weights=False)


def split_spec(spec: str) -> tuple[str, str]:
    """`family/name` -> (family, name); a bare `pixels` -> ("pixels", "")."""
    family, _, name = spec.partition("/")
    return family, name


def build_backbone(spec: str, **options):
    family, name = split_spec(spec)
    model, transform = BACKBONES.get(family)(name, **options)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, transform


__all__ = ["BACKBONES", "build_backbone", "split_spec"]
