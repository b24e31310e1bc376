"""Where the best detector of a pair fails: the ID test images it scores most OOD and the OOD images it scores most
ID, read from the run's `scores.npz` (higher = more ID) and shown as image grids in the OOD report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lightning_modules.data.base import show_image

FAILURES_SHOWN = 8


def failure_rows(id_scores: np.ndarray, ood_scores: np.ndarray, n: int = FAILURES_SHOWN) -> tuple[np.ndarray, np.ndarray]:
    """The `n` ID samples of the lowest score (the most OOD-looking; ties by row) and the `n` OOD samples of the
    highest score (the most ID-looking)."""
    return (np.argsort(id_scores, kind="stable")[:n], np.argsort(-np.asarray(ood_scores), kind="stable")[:n])


def _side_images(results_dir: Path, datasets: dict, side: dict, backbone: str, split: str):
    """The images of one side of a pair at `split`, indexed as the scoring job's scores (its classes only; images
    are read when shown: an image folder stays on disk); None for feature datasets."""
    from lightning_modules.data import dataset_options, load_dataset
    from lightning_modules.core.layout import Embeddings
    from lightning_modules.embeddings.artifact import class_rows

    dataset = datasets[side["dataset"]]
    data = load_dataset(dataset["source"], split, dataset_options(dataset))
    if isinstance(data.images, np.ndarray) and data.images.ndim != 4:  # features, not images
        return None
    rows = class_rows(results_dir / Embeddings(side["dataset"], backbone).folder, split, side.get("classes"),
                      "ood.pairs.out.classes")
    return _Rows(data.images, rows)


class _Rows:
    """`images[rows[i]]` as item i, read on access."""

    def __init__(self, images, rows: np.ndarray):
        self.images, self.rows = images, rows

    def __getitem__(self, index: int):
        return self.images[int(self.rows[index])]


def _grid(images: list, rows: np.ndarray, scores: np.ndarray, title: str):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(rows), figsize=(1.1 * len(rows), 1.6), squeeze=False)
    for axis, row in zip(axes[0], rows):
        show_image(axis, images[row])
        axis.set_title(f"{scores[row]:.3g}", fontsize=7)
        axis.axis("off")
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    return figure


def failure_figures(table: pd.DataFrame, results_dir: str | Path, datasets: dict, pairs: dict, eval_split: str):
    """Per pair, the best clean scorer by AUROC (over backbones) and two image grids of its failures: yields
    (pair, caption, [figures]); pairs of feature datasets yield a caption and no figures."""
    from lightning_modules.core.layout import OodRun

    results_dir = Path(results_dir)
    clean = table[table.attack_style.isna()] if "attack_style" in table else table
    for pair, group in clean.groupby("ood", sort=False):
        best = group.sort_values("auroc", ascending=False, kind="stable").iloc[0]
        run = OodRun(best.dataset, best.backbone, pair, best.scorer)
        scores_file = results_dir / run.file("scores.npz")
        caption = (f"{pair}: {best.scorer} on {best.backbone} (AUROC {best.auroc:.3f}); the number above an image is "
                   "its score (higher = more ID)")
        if pair not in pairs or not scores_file.exists():
            yield pair, caption + " — its scores are not in this results folder", []
            continue
        scores = np.load(scores_file)
        id_rows, ood_rows = failure_rows(scores["id"], scores["ood"])
        id_images = _side_images(results_dir, datasets, {"dataset": pairs[pair]["in"]}, best.backbone, eval_split)
        ood_images = _side_images(results_dir, datasets, pairs[pair]["out"], best.backbone, eval_split)
        if id_images is None or ood_images is None:
            yield pair, caption + f"; ID rows scored most OOD {id_rows.tolist()}, OOD rows scored most ID " \
                                  f"{ood_rows.tolist()} (feature datasets: no images)", []
            continue
        yield pair, caption, [_grid(id_images, id_rows, scores["id"], "ID test images it scores most OOD"),
                              _grid(ood_images, ood_rows, scores["ood"], "OOD images it scores most ID")]
