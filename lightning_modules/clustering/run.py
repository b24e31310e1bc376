"""One clustering run: embeddings (+ kNN graph) -> assignments.npy, probs.npy and metrics.json (the source
of truth for the run), mirrored to MLflow."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from lightning_modules.clustering import METHODS
from lightning_modules.embeddings.artifact import read_coarse_labels, read_embeddings
from lightning_modules.core.io import save_npy, write_json
from lightning_modules.metrics.clustering import (LABEL_METRICS, clustering_metrics, effective_clusters, knn_agreement,
                                                  second_cluster_coarse_accuracy, top2_accuracy)
from lightning_modules.core.training import CHECKPOINT_DIR

# What a run measured (mirrored to MLflow as metrics; the run's identity goes to tags and params).
CAPTURE_METRICS = ("acc_top2", "coarse_acc_2nd")  # label-based too
RUN_METRICS = (*LABEL_METRICS, *CAPTURE_METRICS, "clusters_used", "effective_clusters", "knn_agreement", "inertia", "train_loss",
               "n_samples", "seconds")
AGREEMENT_NEIGHBOURS = 10
log = logging.getLogger(__name__)  # knn_agreement is measured on the 10 nearest neighbours


def same_images_embeddings(embeddings_dir, space_dir, split: str) -> np.ndarray:
    """Another backbone's embeddings of the same images, or one line saying they are not."""
    from lightning_modules.core.io import read_json

    first, other = (read_json(Path(d) / f"{split}.meta.json") for d in (embeddings_dir, space_dir))
    if first.get("dataset_fingerprint") != other.get("dataset_fingerprint") or first.get("count") != other.get("count"):
        raise ValueError(f"{space_dir} embeds other images than {embeddings_dir} ({other.get('count')} vs "
                         f"{first.get('count')} rows, or another data fingerprint); multi-space clustering needs one "
                         f"dataset and split embedded by every backbone")
    embeddings, _ = read_embeddings(space_dir, split)
    return np.asarray(embeddings)


def cluster_embeddings(
    embeddings_dir, split: str, method: str, params: dict, k: int, seed: int, out_dir,
    run_info: dict | None = None, knn_dir=None, graph_k: int | None = None,
    logger=None, space_dirs=(),
) -> dict:
    """Fit `method` with K clusters on the split's embeddings; labels are read only to score the result.

    Methods that need the kNN graph read `{knn_dir}/{split}.k{graph_k}.npy`, which must have been built from
    these embeddings. Multi-space methods also read `{space_dir}/{split}.npy` of each other backbone, which must
    embed the same images (checked by the dataset fingerprint). Writes `assignments.npy` (int32), `probs.npy` (float16, for methods with soft
    assignments) and then `metrics.json` into `out_dir`; returns the metrics record.
    """
    embeddings, labels = read_embeddings(embeddings_dir, split)
    if not 2 <= k <= len(embeddings):
        raise ValueError(f"clustering.k: K={k} must be between 2 and the number of samples ({len(embeddings)})")
    entry = METHODS.entry(method)
    fit_inputs = {}
    neighbours = None
    if knn_dir is not None:
        from lightning_modules.clustering.knn import read_knn_graph

        neighbours = np.asarray(read_knn_graph(knn_dir, split, graph_k, embeddings))
    if entry.info.get("needs_knn"):
        if neighbours is None:
            raise ValueError(f"clustering method '{method}' needs the kNN graph (knn_dir)")
        fit_inputs["neighbours"] = neighbours
    if space_dirs:
        if not entry.info.get("spaces"):
            raise ValueError(f"clustering method '{method}' reads one embedding space; only turtle reads several")
        fit_inputs["spaces"] = [same_images_embeddings(embeddings_dir, space_dir, split) for space_dir in space_dirs]
    out_dir = Path(out_dir)
    if entry.info.get("lightning"):
        fit_inputs["logger"] = logger
        # a killed job resumes from here; removed once the run's artifacts are written
        fit_inputs["checkpoint_dir"] = out_dir / CHECKPOINT_DIR
    estimator = entry.load()(n_clusters=k, seed=seed, **params)
    log.info("%s with K = %d, seed %d on %d x %d embeddings (%s)%s", method, k, seed, *np.shape(embeddings),
             embeddings_dir, f" and {len(space_dirs)} more space(s)" if space_dirs else "")
    started = time.perf_counter()
    assignments = np.asarray(estimator.fit_predict(np.asarray(embeddings), **fit_inputs), dtype=np.int32)
    seconds = time.perf_counter() - started
    top2 = getattr(estimator, "top2_", None)
    coarse = read_coarse_labels(embeddings_dir, split)

    record = {
        **(run_info or {}),
        "method": method,
        "k": int(k),
        "seed": int(seed),
        "params": params,
        "n_samples": int(len(assignments)),
        "seconds": seconds,
        "inertia": getattr(estimator, "inertia_", None),
        "train_loss": getattr(estimator, "train_loss_", None),
        "selected_head": getattr(estimator, "selected_head_", None),
        "effective_clusters": effective_clusters(assignments),
        "knn_agreement": None if neighbours is None else knn_agreement(assignments, neighbours[:, :AGREEMENT_NEIGHBOURS]),
        **clustering_metrics(labels, assignments, n_clusters=k),
        "acc_top2": float("nan") if top2 is None else top2_accuracy(labels, top2, n_clusters=k),
        "coarse_acc_2nd": float("nan") if top2 is None else second_cluster_coarse_accuracy(coarse, top2),
        # Which numbers used the ground truth (evaluation only; nothing was selected with them).
        "label_metrics": [*LABEL_METRICS, *CAPTURE_METRICS],
    }
    if record["selected_head"] is not None:
        record["head_selection"] = f"{estimator.selection_rule} (labels not used)"
    save_npy(out_dir / "assignments.npy", assignments)
    if getattr(estimator, "probs_", None) is not None:
        save_npy(out_dir / "probs.npy", estimator.probs_.astype(np.float16))
    write_json(out_dir / "metrics.json", record)
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    log.info("done in %.1f s: %d clusters used, effective %.1f, kNN agreement %s -> %s", seconds,
             record["clusters_used"], record["effective_clusters"],
             "–" if record["knn_agreement"] is None else f"{record['knn_agreement']:.3f}", out_dir)
    return record


def run_clustering_job(tracking_uri: str, experiment: str, tags: dict, **run) -> dict:
    """`cluster_embeddings` plus its MLflow run (training curves for Lightning methods, then the record)."""
    from lightning_modules.services.tracking import TrackedRun

    tracked = TrackedRun(tracking_uri, experiment, run["out_dir"], tags,
                         curves=bool(METHODS.entry(run["method"]).info.get("lightning")))
    record = cluster_embeddings(**run, logger=tracked.logger)
    chosen = {} if record["selected_head"] is None else {"selected_head": record["selected_head"]}
    tracked.finish(record, RUN_METRICS, params={"split": run["split"], "k": run["k"], "seed": run["seed"],
                                                **run["params"], **chosen},
                   artifacts=[Path(run["out_dir"]) / "metrics.json"])
    return record
