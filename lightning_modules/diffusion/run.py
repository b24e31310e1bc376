"""One diffusion run: train an EDM denoiser on a dataset split conditioned as the run says (conditioning.py),
sample from it, and score the samples against the real images in every configured feature network
(scoring.py: FD, KID, and the real-vs-real FD of two disjoint real sets as the noise floor). Writes `samples.npy`, `labels.npy` (the
conditioning label of each sample, −1 when unconditional) and `metrics.json`; a killed job resumes from its
last checkpoint."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from lightning_modules.data import DatasetSplit
from lightning_modules.diffusion.conditioning import sample_labels
from lightning_modules.diffusion.images import prepare_images, save_sample_grid
from lightning_modules.diffusion.scoring import feature_networks, real_reference_sets, score_samples
from lightning_modules.core.io import save_npy, write_json
from lightning_modules.core.training import CHECKPOINT_DIR

SAMPLE_GRID = "samples.png"  # the first 64 samples, logged to the run in MLflow

log = logging.getLogger(__name__)


def _train(module, images: np.ndarray, labels: np.ndarray | None, params: dict, seed: int, checkpoint_dir, logger,
           progress: bool | None):
    """Lightning fit with the configured devices, strategy and precision; resumes from the last checkpoint."""
    import warnings

    import pytorch_lightning as pl

    from lightning_modules.diffusion.model import ImagesDataModule
    from lightning_modules.core.jobs import on_terminal
    from lightning_modules.core.training import resumable, run_identity, step_log

    data = ImagesDataModule(images * 2 - 1, labels, params["batch_size"], seed)  # EDM's range: [-1, 1]
    identity = run_identity(module, images, labels, seed=seed, params=params)
    callbacks, resume_from = resumable(checkpoint_dir, identity, every_n_train_steps=params["checkpoint_every"])
    plugins = []
    if params["devices"] not in (1, "1"):
        # Lightning launches the other ranks itself: inside a SLURM job step (one task) its SLURM environment
        # would wait for ranks SLURM never starts
        from lightning_fabric.plugins.environments import LightningEnvironment

        plugins.append(LightningEnvironment())
    steps = params["train_steps"]
    trainer = pl.Trainer(max_steps=steps, accelerator="auto", devices=params["devices"], strategy=params["strategy"],
                         precision=params["precision"], plugins=plugins, deterministic=False,
                         logger=logger if logger is not None else False, enable_model_summary=False,
                         enable_progress_bar=on_terminal(progress), callbacks=[*callbacks, step_log(steps)],
                         log_every_n_steps=max(1, steps // 50))  # ~50 points of the loss curve in MLflow
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")  # steps, not epochs
        trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    return trainer


def train_diffusion(
    data: DatasetSplit, condition: str, out_dir, params: dict, networks: dict, assignments=None, seed: int = 0,
    run_info: dict | None = None, logger=None, progress: bool | None = None,
) -> dict | None:
    """Train on `data` conditioned as `condition` says, sample `params["n_samples"]` images, score them in
    `networks` (name -> features). Returns the record (None on the non-zero ranks of a multi-GPU run: rank 0
    samples and writes)."""
    import pytorch_lightning as pl

    from lightning_modules.diffusion import CONDITIONERS, parse_condition
    from lightning_modules.services.tracking import uses_labels
    from lightning_modules.diffusion.features import class_consistency
    from lightning_modules.diffusion.model import EDMDenoiser

    kind, method, k = parse_condition(condition)
    labels, n_classes = CONDITIONERS.get(kind)(data, assignments, k)
    images = prepare_images(data.images, params["image_size"], params["fit"])
    pl.seed_everything(seed, workers=True, verbose=False)
    module = EDMDenoiser(
        image_shape=images.shape[1:], network=params["network"], n_classes=n_classes, edm=params["edm"],
        p_uncond=params["p_uncond"], lr=params["lr"], lr_rampup_images=int(params["lr_rampup_kimg"] * 1000),
        ema_halflife_kimg=params["ema_halflife_kimg"], ema_rampup_ratio=params["ema_rampup_ratio"],
        batch_size=params["batch_size"], seed=seed)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    trainer = _train(module, images, labels, params, seed, out_dir / CHECKPOINT_DIR, logger, progress)
    if trainer.global_rank != 0:
        return None
    trained = time.perf_counter()
    count = params["n_samples"]
    wanted = None if labels is None else torch.from_numpy(sample_labels(labels, n_classes, count,
                                                                        params["sample_labels"], seed))
    samples = module.sample(wanted, n=count, guidance=params["guidance"], seed=seed).numpy()
    sampled = time.perf_counter()

    real, floor = real_reference_sets(len(images), count, seed)
    metrics = params["metrics"]
    record = {
        **(run_info or {}),
        "cond": condition, "method": method, "k": k, "seed": seed,
        **score_samples(samples, images[real], images[floor], networks, metrics["kid_subsets"],
                        metrics["kid_subset_size"], seed),
        "train_steps": int(trainer.global_step), "n_samples": count, "reference_images": len(real),
        "network_evaluations": 2 * module.settings.steps - 1,
        "train_seconds": trained - started, "sample_seconds": sampled - trained,
        "params": params,
        # `class` trains on the ground truth; the metrics compare with real images and use no labels
        "uses_labels": uses_labels(CONDITIONERS.entry(kind).info["fit_labels"]),
    }
    classifier = networks.get("classifier")
    if classifier is not None and wanted is not None and (data.labels >= 0).any():
        record["class_consistency"] = class_consistency(classifier.predict(samples), wanted.numpy(), labels,
                                                        data.labels)
    save_npy(out_dir / "samples.npy", samples.astype(np.float16))
    save_sample_grid(samples, out_dir / SAMPLE_GRID)
    save_npy(out_dir / "labels.npy", np.full(count, -1, np.int32) if wanted is None else wanted.numpy().astype(np.int32))
    write_json(out_dir / "metrics.json", record)
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    return record


def train_feature_classifier(dataset: dict, out_dir, params: dict) -> dict:
    """The `classifier` feature network of a data set: trained once on its (prepared) training images."""
    from lightning_modules.data import dataset_options, load_dataset
    from lightning_modules.diffusion.features import train_classifier

    data = load_dataset(dataset["source"], dataset["split"], dataset_options(dataset))
    images = prepare_images(data.images, params["image_size"], params["fit"])
    return train_classifier(images, data.labels, out_dir, epochs=params["metrics"]["classifier_epochs"])


def run_diffusion_job(tracking_uri: str, experiment: str, tags: dict, dataset: dict, condition: str, out_dirs: list,
                      params: dict, feature_backbone: dict, seeds: list[int], assignments=None, embeddings_meta=None,
                      classifier_dir=None, run_info: dict | None = None) -> list[dict | None]:
    """Load the dataset split, check that cluster assignments belong to it and build the feature networks once;
    then per seed (its own folder and MLflow run): train, sample and score."""
    from lightning_modules.data import dataset_options, load_dataset
    from lightning_modules.core.io import load_npy, read_json
    from lightning_modules.diffusion import CONDITIONERS, parse_condition
    from lightning_modules.services.tracking import TrackedRun

    if len(out_dirs) != len(seeds):
        raise ValueError(f"{len(seeds)} diffusion seeds for {len(out_dirs)} output folders")
    data = load_dataset(dataset["source"], dataset["split"], dataset_options(dataset))
    cluster_labels = None
    if assignments is not None:
        recorded = read_json(embeddings_meta).get("dataset_fingerprint")
        if recorded != data.fingerprint():
            raise ValueError(f"{assignments} clusters other data than this dataset's (fingerprint mismatch); "
                             f"rerun its embedding and clustering")
        cluster_labels = load_npy(assignments, mmap=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    networks = feature_networks(params["metrics"], feature_backbone, classifier_dir, device)
    log.info("diffusion on %s (%d images), condition %s, seeds %s: network %s, %d steps of batch %d, %d samples "
             "scored in %s", dataset["source"], len(data), condition, seeds, params["network"]["name"],
             params["train_steps"], params["batch_size"], params["n_samples"], ", ".join(networks))
    records = []
    for seed, out_dir in zip(seeds, out_dirs):
        tracked = TrackedRun(tracking_uri, experiment, out_dir, {**tags, "seed": seed}, curves=True)
        record = train_diffusion(data, condition, out_dir, params, networks, cluster_labels, seed,
                                 {**(run_info or {}), "feature_backbone": feature_backbone["spec"]}, tracked.logger,
                                 progress=False)
        records.append(record)
        if record is None:  # a non-zero rank of a multi-GPU run
            continue
        metrics = [name for name in record if name.startswith(("fd_", "kid_"))
                   or name in ("class_consistency", "train_steps", "train_seconds", "sample_seconds")]
        tracked.finish(record, metrics, params={"condition": condition, "seed": seed, **params},
                       artifacts=[Path(out_dir) / "metrics.json", Path(out_dir) / SAMPLE_GRID],
                       fit_labels=CONDITIONERS.entry(parse_condition(condition)[0]).info["fit_labels"])
        log.info("seed %d: %s; trained %.1f s -> %s", seed,
                 ", ".join(f"{name} {record[name]:.4g}" for name in record if name.startswith("fd_")),
                 record["train_seconds"], out_dir)
    return records
