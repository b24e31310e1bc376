"""Backbone registry: a spec string (`pixels`, `timm/<model>`, `torchvision/<name>:<weights>`,
`openclip/<arch>:<pretrained>`, `hf/<repo_id>`) names a family and a model;
`build_backbone(spec, **options) -> (model, transform)` gives a frozen nn.Module in eval mode and the
per-image preprocessing the model expects (a callable on a float (C, H, W) tensor in [0, 1]).

Registry info `text_tower`: the model keeps a text encoder (zero-shot OOD scoring needs one).

Options: `weights` (a local file or folder), `allow_download` (default false: weights come from each
library's cache), `pretrained` (false: random initialisation, for tests), `pooling` (hf: cls | mean)."""

from __future__ import annotations

from lightning_modules.core.registry import Registry

BACKBONES = Registry("backbone")
BACKBONES.register("pixels", "lightning_modules.backbones.pixels:build")
BACKBONES.register("random", "lightning_modules.backbones.random_features:build")
BACKBONES.register("timm", "lightning_modules.backbones.timm_models:build")
BACKBONES.register("torchvision", "lightning_modules.backbones.torchvision_models:build")
BACKBONES.register("openclip", "lightning_modules.backbones.openclip_models:build", text_tower=True)
BACKBONES.register("hf", "lightning_modules.backbones.hf_models:build")


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


def build_from_entry(entry: dict):
    """A config backbone entry `{spec, options…}` -> (model, transform)."""
    return build_backbone(entry["spec"], **{key: value for key, value in entry.items() if key != "spec"})


__all__ = ["BACKBONES", "build_backbone", "build_from_entry", "split_spec"]
