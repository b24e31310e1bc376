"""The shared linear probe of one label source: trained once per ID dataset x backbone and read by every
post-hoc score on it (`probe.npz` + `probe.json`, mirrored to MLflow). Its labels come from the PROBE_LABELS
registry: `classes` (the ID labels), `clusters` (a clustering run's assignments), `plp` (CLIP zero-shot
pseudo-labels from the class names, plp-official-tmlr2024)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from lightning_modules.embeddings.artifact import read_embeddings, read_meta
from lightning_modules.core.io import write_json
from lightning_modules.ood import PROBE_LABELS, PROBE_TRAINING
from lightning_modules.ood.run import load_fit_labels
from lightning_modules.core.training import CHECKPOINT_DIR


def class_labels(fit_x, fit_y, **context) -> tuple[np.ndarray, None, dict]:
    """The ID labels (every training row must have one)."""
    from lightning_modules.ood.base import known_labels

    return known_labels(fit_y, "probe-*"), None, {}


def cluster_labels(fit_x, fit_y, assignments=None, **context) -> tuple[np.ndarray, None, dict]:
    """The assignments of the clustering run in `assignments`."""
    return load_fit_labels("clusters", fit_y, len(fit_x), assignments), None, {}


def plp_labels(fit_x, fit_y, fit_dir=None, fit_split=None, backbone=None, **context) -> tuple[np.ndarray, int, dict]:
    """CLIP zero-shot pseudo-labels over the class names, in the joint space; the probe trains on the backbone's
    own features (plp-official linear_probing.py: pre-projection features, projected only for
    `clip_pseudo_probs`). The true labels, where known, only measure the pseudo-labels."""
    from lightning_modules.backbones import build_from_entry
    from lightning_modules.ood.zeroshot import class_text_embeddings, joint_space, require_text_tower, zero_shot_labels

    model = build_from_entry(backbone)[0]
    require_text_tower(model, backbone["spec"], "plp-*")
    text, _ = class_text_embeddings(model, read_meta(fit_dir, fit_split)["label_names"], "plp-*")
    labels = zero_shot_labels(joint_space(model, fit_x), text)
    measured = {}
    if (np.asarray(fit_y) >= 0).all():  # how good the pseudo-labels are: evaluation only, never used to fit
        measured["pseudo_label_accuracy"] = float((labels == np.asarray(fit_y)).mean())
    return labels, len(text), measured


def train_shared_probe(source: str, fit_dir, fit_split: str, out_dir, params: dict, assignments=None,
                       backbone: dict | None = None, logger=None) -> dict:
    """Train the linear probe of one label source on the ID training embeddings; writes `probe.npz` (weights,
    feature statistics) and `probe.json` into `out_dir`. Sources: `classes` (ID labels), `clusters` (the
    clustering run in `assignments`), `plp` (CLIP zero-shot pseudo-labels from the class names; `backbone`)."""
    from lightning_modules.ood.probe import train_probe
    from lightning_modules.core.registry import UnknownNameError

    fit_x, fit_y = read_embeddings(fit_dir, fit_split)
    fit_x = np.asarray(fit_x)
    try:
        label_source = PROBE_LABELS.get(source)
    except UnknownNameError as error:
        raise ValueError(str(error)) from None
    labels, n_classes, record = label_source(fit_x, fit_y, fit_dir=fit_dir, fit_split=fit_split,
                                             assignments=assignments, backbone=backbone)
    record = {"source": source, **record}
    training = {key: params[key] for key in PROBE_TRAINING if key in params}
    started = time.perf_counter()
    # a killed job resumes from its last epoch; removed once the probe is written
    probe = train_probe(fit_x, labels, n_classes, logger=logger, checkpoint_dir=Path(out_dir) / CHECKPOINT_DIR,
                        **training)
    record.update({
        "params": training,
        "n_fit": int(len(fit_x)),
        "n_classes": int(len(probe.bias)),
        "train_loss": probe.train_loss,
        "train_accuracy": float((probe.logits(fit_x).argmax(axis=1) == labels).mean()),  # on its own labels
        "seconds": time.perf_counter() - started,
        "label_metrics": ["pseudo_label_accuracy"] if "pseudo_label_accuracy" in record else [],
    })
    out_dir = Path(out_dir)
    probe.save(out_dir / "probe.npz")
    write_json(out_dir / "probe.json", record)
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    return record


def run_probe_job(tracking_uri: str, experiment: str, tags: dict, **run) -> dict:
    """`train_shared_probe` plus its MLflow run (training curve and record)."""
    from lightning_modules.services.tracking import TrackedRun

    tracked = TrackedRun(tracking_uri, experiment, run["out_dir"], tags, curves=True)
    record = train_shared_probe(**run, logger=tracked.logger)
    tracked.finish(record, ("train_loss", "train_accuracy", "pseudo_label_accuracy", "n_fit", "n_classes", "seconds"),
                   params={"source": record["source"], **record["params"]},
                   artifacts=[Path(run["out_dir"]) / "probe.json"], fit_labels=record["source"])
    return record
