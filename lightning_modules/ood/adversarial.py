"""Adversarial OOD images (the robustness experiment of Adaloglou et al., TMLR): perturb OOD images so that
their embedding matches the embedding of a random ID training image, then re-score them.

delta starts at 1e-3 * N(0, 1); Adam minimises -cos(f(x + delta), f(x_target)) + lambda * TV(delta), with
x + delta clamped to [0, 1]. TV is the mean squared difference of neighbouring pixels, so lambda = 0 gives
"patchy" perturbations and lambda = 5e3 "smooth" ones."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lightning_modules.core.jobs import on_terminal

ATTACK_EXAMPLES = 16  # clean/adversarial image pairs kept for the report


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


def attack_ood_images(
    backbone: dict, fit_dir, fit_split: str, ood_dataset: dict, eval_split: str, ood_dir, ood_classes: list | None,
    out_dir, steps: int = 250, lr: float = 1e-3, tv_weight: float = 0.0, n_images: int = 64,
    batch_size: int = 64, seed: int = 0, progress: bool | None = None,
) -> dict:
    """Perturb up to `n_images` random OOD images of the pair towards random ID training embeddings; writes
    `embeddings.npy` (of the perturbed images), `indices.npy` (which OOD rows), `examples.npz` and
    `attack.json` into `out_dir`."""
    from lightning_modules.backbones import build_from_entry
    from lightning_modules.data import dataset_options, load_dataset
    from lightning_modules.embeddings.artifact import read_embeddings
    from lightning_modules.embeddings.extract import embed_images
    from lightning_modules.core.io import atomic_path, save_npy, write_json
    from lightning_modules.embeddings.artifact import class_rows

    ood_x, _ = read_embeddings(ood_dir, eval_split)
    rows = class_rows(ood_dir, eval_split, ood_classes, "ood.pairs.out.classes")
    data = load_dataset(ood_dataset["source"], eval_split, dataset_options(ood_dataset))
    if len(data) != len(ood_x):
        raise ValueError(f"the OOD data set has {len(data)} samples but its embeddings {len(ood_x)}; re-embed it")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(rows), size=min(n_images, len(rows)), replace=False))
    fit_x, _ = read_embeddings(fit_dir, fit_split)
    targets = np.asarray(fit_x)[rng.choice(len(fit_x), size=len(chosen), replace=True)].astype(np.float32)
    images = np.stack([np.asarray(data.images[i], dtype=np.float32) for i in rows[chosen]])

    model, transform = build_from_entry(backbone)
    started = time.perf_counter()
    adversarial, similarity_after = attack(model, transform, images, targets, steps, lr, tv_weight, batch_size,
                                           seed, progress)
    embeddings = embed_images(model, transform, adversarial, batch_size, progress=False)
    clean = np.asarray(ood_x)[rows[chosen]].astype(np.float64)
    similarity_before = (clean * targets).sum(1) / (np.linalg.norm(clean, axis=1) * np.linalg.norm(targets, axis=1)
                                                    + 1e-12)
    record = {"steps": steps, "lr": lr, "tv_weight": tv_weight, "n_images": int(len(chosen)), "seed": seed,
              "cosine_to_target_before": float(similarity_before.mean()),
              "cosine_to_target_after": float(similarity_after.mean()),
              "max_abs_perturbation": float(np.abs(adversarial - images).max()),
              "mean_l2_perturbation": float(np.linalg.norm((adversarial - images).reshape(len(images), -1), axis=1).mean()),
              "seconds": time.perf_counter() - started}
    out_dir = Path(out_dir)
    save_npy(out_dir / "embeddings.npy", embeddings)
    save_npy(out_dir / "indices.npy", chosen)
    with atomic_path(out_dir / "examples.npz") as tmp:
        np.savez(tmp, clean=images[:ATTACK_EXAMPLES].astype(np.float16),
                 adversarial=adversarial[:ATTACK_EXAMPLES].astype(np.float16))
    write_json(out_dir / "attack.json", record)
    return record
