"""Embedding extraction throughput (images/s) on this machine's CPU (or GPU when visible):

    .venv/bin/python -m benchmarks.embed [--quick]

`pixels` on all 1,797 digits, and a small randomly initialised timm ViT (vit_tiny_patch16_224: digits are
resized to 224x224, as a pretrained one would see them) on the first 256 digits, through the same
extraction code the workflow runs.
"""

from __future__ import annotations

import argparse
import logging
import time


def images_per_second(spec: str, images, batch_size: int, **options) -> float:
    from lightning_modules.backbones import build_backbone
    from lightning_modules.embeddings.extract import embed_images

    model, transform = build_backbone(spec, **options)
    embed_images(model, transform, images[:batch_size], batch_size, progress=False)  # warm-up
    started = time.perf_counter()
    embed_images(model, transform, images, batch_size, progress=False)
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images for the ViT")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    import torch

    from benchmarks.common import report
    from lightning_modules.data import load_dataset

    digits = load_dataset("digits", "all").images
    vit_images = digits[: 64 if args.quick else 256]
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    report("embed", [
        ("pixels_images_per_s", images_per_second("pixels", digits, 512), f"1,797 digits, {device}"),
        ("vit_tiny_images_per_s", images_per_second("timm/vit_tiny_patch16_224", vit_images, 64, pretrained=False),
         f"{len(vit_images)} digits resized to 224x224, random weights, {device}"),
    ])


if __name__ == "__main__":
    main()
