"""Batched embedding extraction: inference mode, autocast on GPU, a progress bar, deterministic order.

Inference is a plain loop rather than `Trainer.predict`: there is nothing to train, log or checkpoint,
and the loop keeps the order of samples explicit."""

from __future__ import annotations

import sys
from importlib import metadata

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

import lightning_modules
from lightning_modules.backbones import build_backbone
from lightning_modules.data import DatasetSplit, dataset_options, load_dataset
from lightning_modules.embeddings.artifact import write_embeddings
from lightning_modules.core.jobs import on_terminal


class _TransformedImages(Dataset):
    def __init__(self, images: np.ndarray, transform):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(torch.from_numpy(np.asarray(self.images[index], dtype=np.float32)))


def embed_images(
    model: torch.nn.Module, transform, images: np.ndarray, batch_size: int = 256, num_workers: int = 0,
    progress: bool | None = None, description: str = "embed",
) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] -> (N, D) float32 embeddings, in input order."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    loader = DataLoader(_TransformedImages(images, transform), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers)
    chunks = []
    with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for batch in tqdm(loader, desc=description, unit="batch", disable=not on_terminal(progress), file=sys.stderr):
            chunks.append(model(batch.to(device, non_blocking=True)).float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def _versions() -> dict[str, str]:
    packages = ("torch", "torchvision", "numpy", "faiss-cpu", "faiss-gpu", "timm", "open_clip_torch", "transformers")
    return {name: metadata.version(name) for name in packages if _installed(name)}


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def extract_dataset_embeddings(
    dataset_name: str, dataset_cfg: dict, split: str, backbone_spec: str, embeddings_dir,
    batch_size: int = 256, num_workers: int = 0, dtype: str = "float32", progress: bool | None = None,
    backbone_options: dict | None = None,
) -> dict:
    """Load the dataset split, embed it with the backbone, write the artifact; returns its meta."""
    data: DatasetSplit = load_dataset(dataset_cfg["source"], split, dataset_options(dataset_cfg))
    model, transform = build_backbone(backbone_spec, **(backbone_options or {}))
    embeddings = embed_images(model, transform, data.images, batch_size, num_workers, progress,
                              description=f"embed {dataset_name}/{split} with {backbone_spec}")
    meta = {
        "dataset": dataset_name,
        "dataset_config": dataset_cfg,
        "split": split,
        "dataset_fingerprint": data.fingerprint(),
        "label_names": data.label_names,
        "backbone_spec": backbone_spec,
        "backbone_options": backbone_options or {},
        "preprocessing": repr(transform),
        "code_version": lightning_modules.__version__,
        "package_versions": _versions(),
    }
    if data.coarse_names:
        meta["coarse_names"] = data.coarse_names
    if data.derivation:
        meta["derivation"] = data.derivation
    write_embeddings(embeddings_dir, split, embeddings.astype(dtype), data.labels, meta, data.coarse_labels)
    return meta
