"""Adversarial OOD images (the robustness experiment of Adaloglou et al., TMLR): perturb OOD images so that
their embedding matches the embedding of a random ID training image, then re-score them.

delta starts at 1e-3 * N(0, 1); Adam minimises -cos(f(x + delta), f(x_target)) + lambda * TV(delta), with
x + delta clamped to [0, 1]. TV is the mean squared difference of neighbouring pixels, so lambda = 0 gives
"patchy" perturbations and lambda = 5e3 "smooth" ones."""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lightning_modules.jobs import on_terminal


def total_variation(delta: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B,) mean squared difference between vertically and horizontally adjacent pixels."""
    vertical = (delta[:, :, 1:, :] - delta[:, :, :-1, :]).pow(2).flatten(1).mean(1)
    horizontal = (delta[:, :, :, 1:] - delta[:, :, :, :-1]).pow(2).flatten(1).mean(1)
    return vertical + horizontal


def _embed(model, transform, images: torch.Tensor) -> torch.Tensor:
    return model(torch.stack([transform(image) for image in images]))


def attack(model: torch.nn.Module, transform, images: np.ndarray, target_embeddings: np.ndarray,
           steps: int = 250, lr: float = 1e-3, tv_weight: float = 0.0, batch_size: int = 64, seed: int = 0,
           progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) images in [0, 1] and (N, D) target embeddings -> the perturbed images (N, C, H, W) and
    the final cosine similarity of each to its target (N,). Differentiable backbones only."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"adversarial attack needs images (N, C, H, W), got shape {images.shape}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    generator = torch.Generator().manual_seed(seed)
    perturbed, similarity = [], []
    batches = range(0, len(images), batch_size)
    bar = tqdm(total=len(batches) * steps, desc="attack", unit="step", disable=not on_terminal(progress), file=sys.stderr)
    for start in batches:
        x = torch.from_numpy(images[start:start + batch_size]).to(device)
        target = F.normalize(torch.as_tensor(target_embeddings[start:start + batch_size], dtype=torch.float32,
                                             device=device), dim=-1)
        delta = (1e-3 * torch.randn(x.shape, generator=generator)).to(device).requires_grad_(True)
        optimiser = torch.optim.Adam([delta], lr=lr)
        for _ in range(steps):
            embedding = _embed(model, transform, (x + delta).clamp(0, 1))
            cosine = F.cosine_similarity(embedding, target, dim=-1)
            loss = (-cosine + tv_weight * total_variation(delta)).sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            bar.update()
        with torch.no_grad():
            adversarial = (x + delta).clamp(0, 1)
            similarity.append(F.cosine_similarity(_embed(model, transform, adversarial), target, dim=-1).cpu())
            perturbed.append(adversarial.cpu())
    bar.close()
    return torch.cat(perturbed).numpy(), torch.cat(similarity).double().numpy()
