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
