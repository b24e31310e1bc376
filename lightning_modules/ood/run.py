"""The OOD scoring job: one in x out pair with one scorer (`scores.npz` + `metrics.json`, mirrored to MLflow).
The shared probes post-hoc scores read are trained by probe/labels.py, the attacked images that
`<scorer>-adv-<style>` runs score are made by adversarial.py.

The scorer fits on the ID dataset's own split (its `split` in config, also the split it is clustered on)
and scores that dataset's `eval_split` (ID) and the out dataset's `eval_split`, restricted to the pair's
classes (OOD)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from lightning_modules.embeddings.artifact import class_rows, read_embeddings, read_meta
from lightning_modules.core.io import atomic_path, load_npy, read_json, write_json
from lightning_modules.metrics.ood import OOD_METRICS, bootstrap_intervals, ood_metrics
from lightning_modules.ood import OOD_SCORERS, build_scorer, scorer_negatives, split_scorer_name
from lightning_modules.ood.probe import Probe
from lightning_modules.core.training import CHECKPOINT_DIR

RUN_METRICS = (*OOD_METRICS, *(f"{name}_{end}" for name in OOD_METRICS for end in ("low", "high")),
               "n_fit", "n_id", "n_ood", "seconds")


def load_fit_labels(kind: str | None, fit_labels: np.ndarray, n_fit: int, assignments_path) -> np.ndarray | None:
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

    from lightning_modules.backbones import build_from_entry

    context, labels = {}, None
    if entry.info.get("probe"):
        context["probe"] = Probe.load(probe)
    elif entry.info.get("text"):
        context = {"backbone": build_from_entry(backbone)[0], "backbone_spec": backbone["spec"],
                   "class_names": read_meta(fit_dir, fit_split)["label_names"]}
    else:
        labels = load_fit_labels(entry.info.get("labels"), fit_y, len(fit_x), assignments)
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
    from lightning_modules.services.tracking import TrackedRun

    tracked = TrackedRun(tracking_uri, experiment, run["out_dir"], tags)
    record = score_ood_pair(**run)
    tracked.finish(record, (*RUN_METRICS, "sensitivity"), params={"eval_split": run["eval_split"], **record["params"]},
                   artifacts=[Path(run["out_dir"]) / "metrics.json"], fit_labels=record["fit_labels"] or "none")
    return record


