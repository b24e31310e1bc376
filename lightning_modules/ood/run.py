"""OOD jobs: train the linear probe of one label source (shared by every post-hoc score), score one in x out
pair with one scorer (`scores.npz` + `metrics.json`, mirrored to MLflow), and attack one pair's OOD images
(the adversarial embeddings that `<scorer>-adv-<style>` runs score).

The scorer fits on the ID dataset's own split (its `split` in config, also the split it is clustered on)
and scores that dataset's `eval_split` (ID) and the out dataset's `eval_split`, restricted to the pair's
classes (OOD)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from lightning_modules.data.builders import class_index
from lightning_modules.embeddings.artifact import read_embeddings, read_meta
from lightning_modules.io import atomic_path, load_npy, read_json, save_npy, write_json
from lightning_modules.metrics.ood import OOD_METRICS, bootstrap_intervals, ood_metrics
from lightning_modules.ood import OOD_SCORERS, PROBE_TRAINING, build_scorer, scorer_negatives, split_scorer_name
from lightning_modules.ood.probe import Probe
from lightning_modules.training import CHECKPOINT_DIR

RUN_METRICS = (*OOD_METRICS, *(f"{name}_{end}" for name in OOD_METRICS for end in ("low", "high")),
               "n_fit", "n_id", "n_ood", "seconds")
ATTACK_EXAMPLES = 16  # clean/adversarial image pairs kept for the report


def class_rows(embeddings_dir, split: str, classes: list | None, key: str) -> np.ndarray:
    """Row indices of the split whose label is one of `classes` (all rows when None)."""
    _, labels = read_embeddings(embeddings_dir, split)
    if not classes:
        return np.arange(len(labels))
    names = read_meta(embeddings_dir, split)["label_names"]
    wanted = [class_index(names, name, key) for name in classes]
    rows = np.flatnonzero(np.isin(labels, wanted))
    if not len(rows):
        raise ValueError(f"{key}: no samples of classes {classes} in {embeddings_dir}/{split}.npy")
    return rows


def _build_backbone(backbone: dict):
    """A config backbone entry `{spec, options…}` -> (model, transform)."""
    from lightning_modules.backbones import build_backbone

    return build_backbone(backbone["spec"], **{key: value for key, value in backbone.items() if key != "spec"})


def _fit_labels(kind: str | None, fit_labels: np.ndarray, n_fit: int, assignments_path) -> np.ndarray | None:
    if kind == "classes":
        return fit_labels
    if kind == "clusters":
        assignments = load_npy(assignments_path, mmap=False)
        if len(assignments) != n_fit:
            raise ValueError(f"{assignments_path} has {len(assignments)} assignments for {n_fit} ID training "
                             f"embeddings; the clusters come from another split or dataset")
        return assignments
    return None


def score_ood_pair(
    scorer: str, params: dict, fit_dir, fit_split: str, eval_split: str, ood_dir, ood_classes: list | None,
    out_dir, assignments=None, adversarial_dir=None, backbone: dict | None = None, run_info: dict | None = None,
    bootstrap: dict | None = None, probe=None, negatives: dict | None = None,
) -> dict:
    """`bootstrap`: `{resamples, seed, level}` of the metrics' percentile intervals (None: bootstrap_intervals' own);
    `probe`: the shared probe file that post-hoc scores read; `negatives`: `{dataset, dir, split}` of the shifted
    images a self-distillation scorer trains against (their `eval_split` gives its sensitivity score)."""
    base, style = split_scorer_name(scorer)
    entry = OOD_SCORERS.entry(base)
    fit_x, fit_y = read_embeddings(fit_dir, fit_split)
    id_x, _ = read_embeddings(fit_dir, eval_split)
    ood_x, _ = read_embeddings(ood_dir, eval_split)
    ood_x = np.asarray(ood_x)[class_rows(ood_dir, eval_split, ood_classes, "ood.pairs.out.classes")]
    if ood_x.shape[1] != fit_x.shape[1]:
        raise ValueError(f"ID embeddings have {fit_x.shape[1]} dims but OOD embeddings {ood_x.shape[1]}; "
                         f"an OOD pair needs both sides embedded by the same backbone")

    context, labels = {}, None
    if entry.info.get("probe"):
        context["probe"] = Probe.load(probe)
    elif entry.info.get("text"):
        context = {"backbone": _build_backbone(backbone)[0], "backbone_spec": backbone["spec"],
                   "class_names": read_meta(fit_dir, fit_split)["label_names"]}
    else:
        labels = _fit_labels(entry.info.get("labels"), fit_y, len(fit_x), assignments)
    if entry.info.get("negatives"):
        context["negatives"], _ = read_embeddings(negatives["dir"], negatives["split"])
        # a killed job resumes from its last epoch; removed once the run's artifacts are written
        params = {**params, "checkpoint_dir": Path(out_dir) / CHECKPOINT_DIR}
    started = time.perf_counter()
    model = build_scorer(base, **params).fit(np.asarray(fit_x), labels, **context)
    scores = {"id": model.score(np.asarray(id_x))}
    extra = {}
    if style:
        adversarial = Path(adversarial_dir)
        rows = load_npy(adversarial / "indices.npy")
        scores["ood"] = model.score(load_npy(adversarial / "embeddings.npy"))
        scores["ood_clean"] = model.score(ood_x[rows])
        extra = {f"{name}_clean": value for name, value in ood_metrics(scores["id"], scores["ood_clean"]).items()}
        extra["attack"] = read_json(adversarial / "attack.json")
    else:
        scores["ood"] = model.score(ood_x)
    if entry.info.get("negatives"):
        # label-free: how strongly the trained score separates held-out ID images from the same images shifted
        scores["id_shifted"] = model.score(np.asarray(read_embeddings(negatives["dir"], eval_split)[0]))
        extra["sensitivity"] = ood_metrics(scores["id"], scores["id_shifted"])["auroc"]
        extra["negatives"] = {"name": scorer_negatives(scorer), "dataset": negatives["dataset"]}
    seconds = time.perf_counter() - started

    record = {
        **(run_info or {}),
        "scorer": scorer,
        "base_scorer": base,
        "attack_style": style,
        "params": {key: value for key, value in params.items() if key != "checkpoint_dir"},
        "fit_labels": entry.info.get("labels"),
        **ood_metrics(scores["id"], scores["ood"]),
        **bootstrap_intervals(scores["id"], scores["ood"], **bootstrap_arguments(bootstrap)),
        "bootstrap": bootstrap,
        **extra,
        "n_fit": int(len(fit_x)),
        "n_id": int(len(scores["id"])),
        "n_ood": int(len(scores["ood"])),
        "seconds": seconds,
        "train_loss": getattr(model, "train_loss_", None),
        # OOD metrics use which samples are ID and which OOD; `fit_labels` says what the scorer trained on.
        "label_metrics": list(OOD_METRICS),
    }
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "scores.npz") as tmp:
        np.savez(tmp, **scores)
    write_json(out_dir / "metrics.json", record)
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    return record


def bootstrap_arguments(bootstrap: dict | None) -> dict:
    """`ood.bootstrap` as bootstrap_intervals' keywords (None: its own defaults, the schema's)."""
    names = {"resamples": "n_resamples", "seed": "seed", "level": "level"}
    return {names[key]: value for key, value in (bootstrap or {}).items()}


def run_ood_job(tracking_uri: str, experiment: str, tags: dict, **run) -> dict:
    """`score_ood_pair` plus its MLflow run (the final record)."""
    from lightning_modules.tracking import TrackedRun

    tracked = TrackedRun(tracking_uri, experiment, run["out_dir"], tags)
    record = score_ood_pair(**run)
    tracked.finish(record, (*RUN_METRICS, "sensitivity"), params={"eval_split": run["eval_split"], **record["params"]},
                   artifacts=[Path(run["out_dir"]) / "metrics.json"], fit_labels=record["fit_labels"] or "none")
    return record


def train_shared_probe(source: str, fit_dir, fit_split: str, out_dir, params: dict, assignments=None,
                       backbone: dict | None = None, logger=None) -> dict:
    """Train the linear probe of one label source on the ID training embeddings; writes `probe.npz` (weights,
    feature statistics) and `probe.json` into `out_dir`. Sources: `classes` (ID labels), `clusters` (the
    clustering run in `assignments`), `plp` (CLIP zero-shot pseudo-labels from the class names; `backbone`)."""
    from lightning_modules.ood.base import known_labels
    from lightning_modules.ood.probe import train_probe

    fit_x, fit_y = read_embeddings(fit_dir, fit_split)
    fit_x = np.asarray(fit_x)
    n_classes, record = None, {"source": source}
    if source == "classes":
        labels = known_labels(fit_y, "probe-*")
    elif source == "clusters":
        labels = _fit_labels("clusters", fit_y, len(fit_x), assignments)
    elif source == "plp":
        from lightning_modules.ood.zeroshot import class_text_embeddings, joint_space, require_text_tower, zero_shot_labels

        model = _build_backbone(backbone)[0]
        require_text_tower(model, backbone["spec"], "plp-*")
        text, _ = class_text_embeddings(model, read_meta(fit_dir, fit_split)["label_names"], "plp-*")
        # pseudo-labels in the joint space; the probe trains on the backbone's own features (plp-official
        # linear_probing.py: pre-projection features, projected only for `clip_pseudo_probs`)
        labels, n_classes = zero_shot_labels(joint_space(model, fit_x), text), len(text)
        if (np.asarray(fit_y) >= 0).all():  # how good the pseudo-labels are: evaluation only, never used to fit
            record["pseudo_label_accuracy"] = float((labels == np.asarray(fit_y)).mean())
    else:
        raise ValueError(f"probe source '{source}'; allowed: classes, clusters, plp")
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
    from lightning_modules.tracking import TrackedRun

    tracked = TrackedRun(tracking_uri, experiment, run["out_dir"], tags, curves=True)
    record = train_shared_probe(**run, logger=tracked.logger)
    tracked.finish(record, ("train_loss", "train_accuracy", "pseudo_label_accuracy", "n_fit", "n_classes", "seconds"),
                   params={"source": record["source"], **record["params"]},
                   artifacts=[Path(run["out_dir"]) / "probe.json"], fit_labels=record["source"])
    return record


def attack_ood_images(
    backbone: dict, fit_dir, fit_split: str, ood_dataset: dict, eval_split: str, ood_dir, ood_classes: list | None,
    out_dir, steps: int = 250, lr: float = 1e-3, tv_weight: float = 0.0, n_images: int = 64,
    batch_size: int = 64, seed: int = 0, progress: bool | None = None,
) -> dict:
    """Perturb up to `n_images` random OOD images of the pair towards random ID training embeddings; writes
    `embeddings.npy` (of the perturbed images), `indices.npy` (which OOD rows), `examples.npz` and
    `attack.json` into `out_dir`."""
    from lightning_modules.data import dataset_options, load_dataset
    from lightning_modules.embeddings.extract import embed_images
    from lightning_modules.ood.adversarial import attack

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

    model, transform = _build_backbone(backbone)
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
