"""One diffusion run: train a conditioned denoiser on a dataset split, sample from it, and score the samples
against the real images (Fréchet distance and KID in a backbone's feature space). Writes `samples.npy`,
`labels.npy` (the conditioning label of each sample, -1 when unconditional) and `metrics.json`; a killed job
resumes from its last checkpoint."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from lightning_modules.data import DatasetSplit
from lightning_modules.io import save_npy, write_json
from lightning_modules.training import CHECKPOINT_DIR



def no_conditioning(data: DatasetSplit, assignments=None, k=None):
    return None, None


def class_conditioning(data: DatasetSplit, assignments=None, k=None):
    if (data.labels < 0).any() or not data.label_names:
        raise ValueError("diffusion conditioning 'class' needs labels, and this data set has none")
    return data.labels, len(data.label_names)


def cluster_conditioning(data: DatasetSplit, assignments: np.ndarray | None = None, k: int | None = None):
    if assignments is None or k is None:
        raise ValueError("diffusion conditioning on clusters needs a clustering run's assignments and its K")
    if len(assignments) != len(data):
        raise ValueError(f"the cluster assignments have {len(assignments)} entries for {len(data)} images; "
                         f"they come from another data set or split")
    if k < 2:
        raise ValueError(f"diffusion conditioning on K = {k} cluster is no conditioning; use K >= 2 or 'none'")
    return np.asarray(assignments, dtype=np.int64), int(k)


def prepare_images(images: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """(N, C, h, w) in [0, 1] -> (N, C, size, size) in [0, 1]: zero-padded around the centre, or resized."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"diffusion needs images (N, C, H, W), got shape {images.shape}")
    height, width = images.shape[2:]
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


def sample_labels(labels: np.ndarray, n_classes: int, count: int, how: str = "empirical", seed: int = 0) -> np.ndarray:
    """Conditioning labels to sample with: drawn from the labels' own frequencies p(c) (as C-EDM does), or
    uniformly over the classes."""
    rng = np.random.default_rng(seed)
    if how == "uniform":
        return rng.integers(0, n_classes, count)
    if how != "empirical":
        raise ValueError(f"diffusion.sample_labels = '{how}'; allowed: empirical, uniform")
    frequencies = np.bincount(labels, minlength=n_classes) / len(labels)
    return rng.choice(n_classes, size=count, p=frequencies)


def _train(module, images: np.ndarray, labels: np.ndarray | None, params: dict, seed: int, checkpoint_dir, logger,
           progress: bool) -> int:
    import warnings

    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_modules.training import resumable

    x = torch.from_numpy(images * 2 - 1)  # the denoiser works in [-1, 1]
    y = torch.from_numpy(labels if labels is not None else np.full(len(images), -1))
    loader = DataLoader(TensorDataset(x, y), batch_size=min(params["batch_size"], len(x)), shuffle=True,
                        drop_last=True, generator=torch.Generator().manual_seed(seed))
    callbacks, resume_from = resumable(checkpoint_dir, every_n_train_steps=params["checkpoint_every"])
    trainer = pl.Trainer(max_steps=params["train_steps"], accelerator="auto", devices=1, deterministic=False,
                         logger=logger if logger is not None else False, enable_model_summary=False,
                         enable_progress_bar=progress, callbacks=callbacks, log_every_n_steps=50)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        trainer.fit(module, loader, ckpt_path=resume_from)
    return int(trainer.global_step)


def train_diffusion(
    data: DatasetSplit, condition: str, out_dir, params: dict, feature_backbone: dict, assignments=None,
    seed: int = 0, run_info: dict | None = None, logger=None, progress: bool = True,
) -> dict:
    """Train on `data` conditioned as `condition` says, sample `params["n_samples"]` images, score them."""
    import pytorch_lightning as pl

    from lightning_modules.backbones import build_backbone
    from lightning_modules.diffusion import CONDITIONERS, parse_condition
    from lightning_modules.diffusion.model import ConditionedDenoiser
    from lightning_modules.embeddings.extract import embed_images
    from lightning_modules.metrics.generation import frechet_distance, kernel_inception_distance
    from lightning_modules.naming import backbone_slug

    kind, method, k = parse_condition(condition)
    labels, n_classes = CONDITIONERS.get(kind)(data, assignments, k)
    images = prepare_images(data.images, params["image_size"], params["fit"])
    pl.seed_everything(seed, workers=True, verbose=False)
    module = ConditionedDenoiser(
        image_size=params["image_size"], channels=images.shape[1], n_classes=n_classes,
        block_out_channels=tuple(params["block_out_channels"]), layers_per_block=params["layers_per_block"],
        train_timesteps=params["train_timesteps"], p_uncond=params["p_uncond"], lr=params["lr"],
        warmup_steps=params["warmup_steps"], ema_decay=params["ema_decay"])
    out_dir = Path(out_dir)
    started = time.perf_counter()
    steps = _train(module, images, labels, params, seed, out_dir / CHECKPOINT_DIR, logger, progress)
    count = params["n_samples"]
    wanted = None if labels is None else torch.from_numpy(sample_labels(labels, n_classes, count,
                                                                        params["sample_labels"], seed))
    samples = module.sample(wanted, n=count, steps=params["sampling_steps"], sampler=params["sampler"],
                            guidance=params["guidance"], seed=seed).numpy()
    seconds = time.perf_counter() - started

    model, transform = build_backbone(feature_backbone["spec"], **{key: value for key, value in feature_backbone.items()
                                                                  if key != "spec"})
    real = images[np.random.default_rng(seed).choice(len(images), size=min(count, len(images)), replace=False)]
    real_features = embed_images(model, transform, real, progress=False)
    generated_features = embed_images(model, transform, samples, progress=False)
    kid, kid_std = kernel_inception_distance(real_features, generated_features, seed=seed)
    record = {
        **(run_info or {}),
        "cond": condition, "method": method, "k": k, "seed": seed,
        f"fd_{backbone_slug(feature_backbone['spec'])}": frechet_distance(real_features, generated_features),
        "fd_backbone": feature_backbone["spec"], "kid": kid, "kid_std": kid_std,
        "train_steps": steps, "n_samples": count, "seconds": seconds,
        "params": params,
        # `class` trains on the ground truth; the metrics compare with real images and use no labels
        "uses_labels": CONDITIONERS.entry(kind).info["uses_labels"],
    }
    save_npy(out_dir / "samples.npy", samples.astype(np.float16))
    save_npy(out_dir / "labels.npy", np.full(count, -1, np.int32) if wanted is None else wanted.numpy().astype(np.int32))
    write_json(out_dir / "metrics.json", record)
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    return record


def run_diffusion_job(tracking_uri: str, experiment: str, tags: dict, dataset: dict, condition: str, out_dir,
                      params: dict, feature_backbone: dict, seed: int, assignments=None, embeddings_meta=None,
                      run_info: dict | None = None) -> dict:
    """Load the dataset split, check that cluster assignments belong to it, train and score (tracked)."""
    from lightning_modules.data import dataset_options, load_dataset
    from lightning_modules.io import load_npy, read_json
    from lightning_modules.tracking import lightning_logger, log_run

    data = load_dataset(dataset["source"], dataset["split"], dataset_options(dataset))
    cluster_labels = None
    if assignments is not None:
        recorded = read_json(embeddings_meta).get("dataset_fingerprint")
        if recorded != data.fingerprint():
            raise ValueError(f"{assignments} clusters other data than this dataset's (fingerprint mismatch); "
                             f"rerun its embedding and clustering")
        cluster_labels = load_npy(assignments, mmap=False)
    run_name = str(out_dir)
    logger = lightning_logger(tracking_uri, experiment, run_name, tags)
    record = train_diffusion(data, condition, out_dir, params, feature_backbone, cluster_labels, seed, run_info, logger,
                             progress=True)
    fd_name = next(name for name in record if name.startswith("fd_") and name != "fd_backbone")
    log_run(tracking_uri, experiment, run_name, tags, params={"condition": condition, "seed": seed, **params},
            metrics={name: record[name] for name in (fd_name, "kid", "kid_std", "train_steps", "seconds")},
            artifacts=[Path(out_dir) / "metrics.json"], run_id=getattr(logger, "run_id", None))
    return record
