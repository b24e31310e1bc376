"""Names used as Snakemake wildcards and in artifact paths: slugs of `[a-z0-9._-]`, starting with a letter or
digit (so no name is `..` or hidden, and no path built from names leaves the results folder)."""

from __future__ import annotations

import re

SLUG_PATTERN = r"[a-z0-9][a-z0-9._-]*"
_NOT_SLUG = re.compile(r"[^a-z0-9._-]+")


def slugify(text: str) -> str:
    """`timm/vit_small_patch16_224.dino` -> `timm-vit_small_patch16_224.dino`; the one place specs become names."""
    slug = _NOT_SLUG.sub("-", text.strip().lower()).strip("-._")
    if not slug:
        raise ValueError(f"'{text}' has no characters usable in a name")
    return slug


def backbone_slug(spec: str) -> str:
    return slugify(spec)


SPACE_SEPARATOR = "+"  # `pixels+random-256`: the run read both backbones' embeddings (the first is primary)


def space_slug(backbones: list[dict]) -> str:
    return SPACE_SEPARATOR.join(slugify(b["spec"]) for b in backbones)


def primary_backbone(backbone: str) -> str:
    """The backbone whose embeddings, labels and kNN graph a run (multi-space or not) is measured on."""
    return backbone.split(SPACE_SEPARATOR)[0]
