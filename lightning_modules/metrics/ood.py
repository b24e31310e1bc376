"""OOD detection metrics from scores where higher = more in-distribution (ID).

Two FPR95 conventions are reported under their own names because they differ a lot on skewed score
distributions:
- `fpr95` (ID positive, the classic definition): the fraction of OOD samples accepted at the threshold that
  keeps 95% of ID samples.
- `fpr95_openood` (OpenOOD v1.5: OOD positive): the fraction of ID samples rejected at the threshold that
  catches 95% of OOD samples.
All curves come from scikit-learn with every threshold kept (drop_intermediate=False).
"""

from __future__ import annotations

import numpy as np

OOD_METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_openood")
RECALL_LEVEL = 0.95


def _labelled(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    if not len(id_scores) or not len(ood_scores):
        raise ValueError(f"OOD metrics need ID and OOD scores; got {len(id_scores)} ID and {len(ood_scores)} OOD")
    if not (np.isfinite(id_scores).all() and np.isfinite(ood_scores).all()):
        raise ValueError("OOD scores contain NaN or inf")
    is_id = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    return is_id, np.concatenate([id_scores, ood_scores])


def _fpr_at_recall(positive: np.ndarray, scores: np.ndarray, recall: float) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(positive, scores, drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= recall)])


def _aupr(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve by the trapezoidal rule (as OpenOOD computes it)."""
    from sklearn.metrics import auc, precision_recall_curve

    precision, recall, _ = precision_recall_curve(positive, scores, drop_intermediate=False)
    return float(auc(recall, precision))


def ood_metrics(id_scores, ood_scores) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    is_id, scores = _labelled(id_scores, ood_scores)
    return {
        "auroc": float(roc_auc_score(is_id, scores)),
        "aupr_in": _aupr(is_id, scores),
        "aupr_out": _aupr(1 - is_id, -scores),
        "fpr95": _fpr_at_recall(is_id, scores, RECALL_LEVEL),
        "fpr95_openood": _fpr_at_recall(1 - is_id, -scores, RECALL_LEVEL),
    }


def _curve_metrics(positive: np.ndarray, negative: np.ndarray) -> dict[str, np.ndarray]:
    """(B, U) counts of positives and negatives at each distinct score, highest score first -> per row the
    AUROC, the AUPR (trapezoidal, with scikit-learn's (recall 0, precision 1) end point) and the FPR at 95%
    TPR, exactly as scikit-learn's curves give them on the resampled scores themselves."""
    tp, fp = np.cumsum(positive, axis=1), np.cumsum(negative, axis=1)
    tpr, fpr = tp / tp[:, -1:], fp / fp[:, -1:]
    first = np.zeros((len(tp), 1))
    previous_tpr = np.hstack([first, tpr[:, :-1]])
    auroc = (np.diff(fpr, axis=1, prepend=0) * (tpr + previous_tpr) / 2).sum(axis=1)
    fpr_at_recall = fpr[np.arange(len(tp)), np.argmax(tpr >= RECALL_LEVEL, axis=1)]
    above = tp + fp
    # no sample at or above this score in this resample: the point coincides with the end point (0, 1)
    precision = np.where(above > 0, tp / np.maximum(above, 1), 1.0)
    previous_precision = np.hstack([first + 1, precision[:, :-1]])
    aupr = (np.diff(tpr, axis=1, prepend=0) * (precision + previous_precision) / 2).sum(axis=1)
    return {"auroc": auroc, "aupr": aupr, "fpr_at_recall": fpr_at_recall}


def bootstrap_intervals(id_scores, ood_scores, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                        block: int = 100) -> dict[str, float]:
    """Percentile bootstrap intervals of every OOD metric: ID and OOD test samples are resampled with
    replacement, each side on its own (their sizes stay fixed), `n_resamples` times from `seed`.
    Returns `{metric}_low` and `{metric}_high` for each of OOD_METRICS.

    Vectorised over resamples (one sort, then cumulative counts) instead of calling scikit-learn per resample;
    tests check it against `ood_metrics` on explicit resamples, ties included."""
    is_id, scores = _labelled(id_scores, ood_scores)
    values, inverse = np.unique(-scores, return_inverse=True)  # distinct scores, highest first
    n_values = len(values)
    id_index, ood_index = inverse[is_id == 1], inverse[is_id == 0]
    rng = np.random.default_rng(seed)
    samples = {name: [] for name in OOD_METRICS}
    for start in range(0, n_resamples, block):
        rows = min(block, n_resamples - start)
        offsets = np.arange(rows)[:, None] * n_values

        def counts(index):
            drawn = index[rng.integers(0, len(index), size=(rows, len(index)))]
            return np.bincount((drawn + offsets).ravel(), minlength=rows * n_values).reshape(rows, n_values)

        id_counts, ood_counts = counts(id_index), counts(ood_index)
        id_positive = _curve_metrics(id_counts, ood_counts)
        ood_positive = _curve_metrics(ood_counts[:, ::-1], id_counts[:, ::-1])
        samples["auroc"].append(id_positive["auroc"])
        samples["aupr_in"].append(id_positive["aupr"])
        samples["aupr_out"].append(ood_positive["aupr"])
        samples["fpr95"].append(id_positive["fpr_at_recall"])
        samples["fpr95_openood"].append(ood_positive["fpr_at_recall"])
    tail = 100 * (1 - level) / 2
    intervals = {}
    for name, chunks in samples.items():
        low, high = np.percentile(np.concatenate(chunks), [tail, 100 - tail])
        intervals[f"{name}_low"], intervals[f"{name}_high"] = float(low), float(high)
    return intervals
