"""The images a denoiser trains on and the sample grid a run shows."""

from __future__ import annotations

import numpy as np
import torch


def prepare_images(images: np.ndarray, size: int | None, mode: str = "pad") -> np.ndarray:
    """(N, C, h, w) in [0, 1] -> (N, C, size, size) in [0, 1]: zero-padded around the centre, or resized;
    size None keeps the images as they are."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"diffusion needs images (N, C, H, W), got shape {images.shape}")
    height, width = images.shape[2:]
    if size is None or (size == height == width):
        return images
    if mode == "resize":
        resized = torch.nn.functional.interpolate(torch.from_numpy(images), size=(size, size), mode="bilinear",
                                                  antialias=True, align_corners=False)
        return resized.clamp(0, 1).numpy()
    if height > size or width > size:
        raise ValueError(f"diffusion.image_size = {size} is smaller than the images ({height}x{width}); "
                         f"use resize or a larger size")
    top, left = (size - height) // 2, (size - width) // 2
    padded = np.zeros((*images.shape[:2], size, size), dtype=np.float32)
    padded[:, :, top:top + height, left:left + width] = images
    return padded


def save_sample_grid(samples: np.ndarray, path, count: int = 64, min_side: int = 256) -> None:
    """The first `count` samples as one PNG (8 per row), enlarged without smoothing to at least `min_side`
    pixels: what the run's MLflow page shows."""
    from torchvision.utils import save_image

    images = torch.from_numpy(np.asarray(samples[:count], dtype=np.float32))
    per_row = 8
    scale = max(1, -(-min_side // (per_row * images.shape[-1])))
    images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    save_image(images.clamp(0, 1), str(path), nrow=per_row, padding=scale, pad_value=1.0)
