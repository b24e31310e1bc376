"""What a clustering looks like: per cluster its most confident members as an image grid (a gallery), the cluster x
class matrix in Hungarian order, and the 2-D map of the embeddings coloured by cluster and, beside it, by class.

Confidence is the head's probability of the cluster where the run kept one (`probs.npy`), else closeness to the
cluster's centroid in the embedding space (k-means' own criterion). Labels are read only to annotate the figures
(majority class, purity, the matrix, the class-coloured map), never to choose what is shown: the run drawn is the
label-free pick of the selection (lightning_modules/clustering/selection.py), or any run on request:

    python -m lightning_modules.workflow.figures results/digits/pixels/clusters/temi/k20/seed1
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lightning_modules.clustering.kmeans import cluster_sums
from lightning_modules.data.base import show_image

log = logging.getLogger(__name__)

GALLERY_MEMBERS = 8     # images per cluster
GALLERY_CLUSTERS = 30   # the largest clusters shown when K is larger
EVALUATION_ONLY = "labels: evaluation only"
CHUNK_ROWS = 65536      # rows read at a time from the embeddings


def confidence(run_dir: str | Path, embeddings: np.ndarray, assignments: np.ndarray) -> tuple[np.ndarray, str]:
    """Per sample, how surely it belongs to its cluster (higher: surer), and what that is."""
    probs_file = Path(run_dir) / "probs.npy"
    if probs_file.exists():
        probs = np.load(probs_file, mmap_mode="r")
        return np.asarray(probs[np.arange(len(assignments)), assignments], dtype=np.float64), "head probability"
    # in chunks: the embeddings may be a memory map of millions of rows
    k, chunks = int(assignments.max()) + 1, range(0, len(assignments), CHUNK_ROWS)
    centroids = np.zeros((k, embeddings.shape[1]))
    for start in chunks:
        centroids += cluster_sums(assignments[start:start + CHUNK_ROWS],
                                  np.asarray(embeddings[start:start + CHUNK_ROWS], dtype=np.float64), k)
    centroids /= np.maximum(np.bincount(assignments, minlength=k), 1)[:, None]
    distance = np.concatenate([np.linalg.norm(np.asarray(embeddings[start:start + CHUNK_ROWS], dtype=np.float64)
                                              - centroids[assignments[start:start + CHUNK_ROWS]], axis=1)
                               for start in chunks])
    return -distance, "distance to the centroid"


def confident_members(assignments: np.ndarray, score: np.ndarray, per_cluster: int = GALLERY_MEMBERS,
                      max_clusters: int = GALLERY_CLUSTERS) -> dict[int, np.ndarray]:
    """The `per_cluster` most confident rows of each of the `max_clusters` largest clusters (largest first; ties
    in confidence by row order)."""
    sizes = np.bincount(assignments)
    clusters = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0][:max_clusters]
    members = {}
    for cluster in clusters:
        rows = np.flatnonzero(assignments == cluster)
        members[int(cluster)] = rows[np.argsort(-score[rows], kind="stable")[:per_cluster]]
    return members


def _contingency(assignments: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Cluster x class counts (unlabelled samples, -1, left out) and the Hungarian match cluster -> class (the
    one-to-one map behind ACC)."""
    from scipy.optimize import linear_sum_assignment

    known = labels >= 0
    k, n_classes = int(assignments.max()) + 1, int(labels[known].max()) + 1
    counts = np.zeros((k, n_classes), dtype=np.int64)
    np.add.at(counts, (assignments[known], labels[known]), 1)
    rows, cols = linear_sum_assignment(-counts)
    return counts, dict(zip(rows.tolist(), cols.tolist()))


def hungarian_order(assignments: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cluster x class count matrix with clusters reordered so that the matched clusters come in the order of
    their classes (a diagonal when K = the number of classes); unmatched clusters follow, by majority class.
    Returns (matrix, cluster order)."""
    counts, match = _contingency(assignments, labels)
    matched = sorted(match, key=match.get)
    rest = sorted(set(range(len(counts))) - set(match), key=lambda c: (counts[c].argmax(), -counts[c].sum()))
    order = np.array(matched + rest)
    return counts[order], order


def matched_colours(assignments: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per sample a colour index: its cluster's matched class (so the two map panels share colours), or a
    colour after the classes' for an unmatched cluster."""
    counts, match = _contingency(assignments, labels)
    unmatched = sorted(set(range(len(counts))) - set(match))
    colour = {**match, **{c: counts.shape[1] + i for i, c in enumerate(unmatched)}}
    return np.vectorize(colour.get)(assignments)


def _label_text(rows: np.ndarray, labels: np.ndarray | None, names: list[str] | None) -> str:
    if labels is None or not (labels[rows] >= 0).any():
        return ""
    values, counts = np.unique(labels[rows][labels[rows] >= 0], return_counts=True)
    majority = values[counts.argmax()]
    name = names[majority] if names else str(majority)
    return f"majority {name}, purity {counts.max() / counts.sum():.2f}"


def gallery_figure(images, assignments: np.ndarray, members: dict[int, np.ndarray], labels: np.ndarray | None,
                   names: list[str] | None, title: str):
    """One row per cluster: its size (and, marked, majority class and purity) and its most confident images."""
    import matplotlib.pyplot as plt

    sizes = np.bincount(assignments)
    columns = max(len(rows) for rows in members.values())
    figure, axes = plt.subplots(len(members), columns + 1, squeeze=False,
                                figsize=(1.0 * (columns + 2), 0.9 * len(members) + 0.6),
                                gridspec_kw={"width_ratios": [2] + [1] * columns})
    for axis_row, (cluster, rows) in zip(axes, members.items()):
        labels_text = _label_text(np.flatnonzero(assignments == cluster), labels, names)
        axis_row[0].text(0, 0.5, f"cluster {cluster}: {sizes[cluster]}\n{labels_text}", va="center", fontsize=8)
        for axis, row in zip(axis_row[1:], [*rows, *[None] * columns]):
            if row is not None:
                show_image(axis, images[row])
        for axis in axis_row:
            axis.axis("off")
    figure.suptitle(f"{title}: most confident members per cluster ({EVALUATION_ONLY})", fontsize=9)
    figure.tight_layout()
    return figure


def matrix_figure(assignments: np.ndarray, labels: np.ndarray, names: list[str] | None, title: str):
    """The Hungarian-ordered cluster x class counts, coloured by each cluster's share."""
    import matplotlib.pyplot as plt

    counts, order = hungarian_order(assignments, labels)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(0.35 * counts.shape[1] + 2.5, 0.25 * counts.shape[0] + 1.8))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    if counts.size <= 600:
        for (row, column), value in np.ndenumerate(counts):
            if value:
                axis.text(column, row, str(value), ha="center", va="center", fontsize=6,
                          color="white" if shares[row, column] > 0.6 else "black")
    axis.set_xticks(range(counts.shape[1]), names if names else range(counts.shape[1]), fontsize=7, rotation=90)
    axis.set_yticks(range(len(order)), order, fontsize=7)
    axis.set_xlabel(f"class ({EVALUATION_ONLY})")
    axis.set_ylabel("cluster")
    axis.set_title(f"{title}\nclusters on the diagonal: the Hungarian match behind ACC", fontsize=9)
    figure.tight_layout()
    return figure


def map_figure(coordinates: np.ndarray, assignments: np.ndarray, labels: np.ndarray | None, title: str):
    """The 2-D map coloured by cluster and, beside it, by class."""
    import matplotlib.pyplot as plt

    if labels is None:
        panels = [("cluster", assignments)]
    else:  # a cluster takes the colour of the class it is matched to (labels only colour the picture)
        panels = [("cluster (coloured as its matched class)", matched_colours(assignments, labels)),
                  (f"class ({EVALUATION_ONLY})", labels)]
    top = max(int(colours.max()) for _, colours in panels)
    palette = "tab10" if top < 10 else ("tab20" if top < 20 else "nipy_spectral")
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    for axis, (what, colours) in zip(axes[0], panels):
        axis.scatter(coordinates[:, 0], coordinates[:, 1], c=colours, cmap=palette, vmin=0, vmax=max(top, 1), s=3,
                     linewidths=0)
        axis.set_title(f"by {what}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _images_of(dataset: dict | None, embeddings_meta: Path):
    """The dataset's images, or None (features, not images; or other data than was embedded: said once)."""
    from lightning_modules.data import dataset_options, load_dataset
    from lightning_modules.core.io import read_json

    if dataset is None:
        return None
    data = load_dataset(dataset["source"], dataset["split"], dataset_options(dataset))
    if isinstance(data.images, np.ndarray) and data.images.ndim != 4:
        return None
    if embeddings_meta.exists() and read_json(embeddings_meta).get("dataset_fingerprint") != data.fingerprint():
        log.warning("the dataset no longer matches its embeddings (fingerprint): the gallery lists row ids only")
        return None
    return data.images


def draw_cluster_figures(run_dir: str | Path, embeddings_path: str | Path, out_dir: str | Path,
                         dataset: dict | None = None, map_path: str | Path | None = None,
                         title: str | None = None) -> dict:
    """gallery.png (when the data are images), matrix.png (when labelled), map.png (with a map) and gallery.json
    (per cluster: size and its most confident rows with their labels) for the clustering run in `run_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lightning_modules.core.io import atomic_path, load_npy, read_json, write_json

    run_dir, out_dir, embeddings_path = Path(run_dir), Path(out_dir), Path(embeddings_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    assignments = load_npy(run_dir / "assignments.npy", mmap=False).astype(np.int64)
    embeddings = load_npy(embeddings_path)
    labels_file = embeddings_path.with_name(embeddings_path.name.replace(".npy", ".labels.npy"))
    labels = load_npy(labels_file, mmap=False).astype(np.int64) if labels_file.exists() else None
    labelled = labels is not None and (labels >= 0).any()
    meta_file = embeddings_path.with_name(embeddings_path.name.replace(".npy", ".meta.json"))
    names = read_json(meta_file).get("label_names") if meta_file.exists() else None
    title = title or "/".join(run_dir.parts[-6:])
    score, confidence_kind = confidence(run_dir, embeddings, assignments)
    members = confident_members(assignments, score)
    record = {"run": str(run_dir), "confidence": confidence_kind, "figures": [],
              "clusters": [{"cluster": cluster, "size": int((assignments == cluster).sum()), "rows": rows.tolist(),
                            "labels": labels[rows].tolist() if labelled else None}
                           for cluster, rows in members.items()]}

    def save(figure, name: str) -> None:
        with atomic_path(out_dir / name) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        plt.close(figure)
        record["figures"].append(name)

    images = _images_of(dataset, meta_file)
    if images is not None:
        save(gallery_figure(images, assignments, members, labels if labelled else None, names, title), "gallery.png")
    if labelled:
        save(matrix_figure(assignments, labels, names, title), "matrix.png")
    if map_path is not None:  # the map's rows: all, or its sample (lightning_modules/embeddings/maps.py)
        rows = load_npy(str(map_path).replace(".npy", ".rows.npy"), mmap=False)
        save(map_figure(load_npy(map_path, mmap=False), assignments[rows], labels[rows] if labelled else None, title),
             "map.png")
    write_json(out_dir / "gallery.json", record)
    return record


def selected_run(selection_path: str | Path, run_dirs: list[str | Path], seed: int) -> tuple[Path, str]:
    """The folder of the selection's first pick (its first criterion: the configured default) at `seed` (the
    sweep's first), and how it was picked."""
    from lightning_modules.core.io import read_json
    from lightning_modules.core.layout import parse

    pick = read_json(selection_path)["picks"][0]
    for run_dir in run_dirs:
        run = parse(run_dir)
        if (run.method, run.k, run.seed) == (pick["method"], pick["k"], seed):
            return Path(run_dir), f"the label-free pick by {pick['criterion']}, seed {seed}"
    raise ValueError(f"no run {pick['method']} K = {pick['k']} seed {seed} among the selection's runs")


def draw_selected_figures(selection_path, run_dirs: list, seed: int, embeddings_path, out_dir, dataset: dict,
                          map_path=None, tracking: dict | None = None) -> dict:
    """The figures of a dataset x backbone's selected run in `out_dir` (and on the run in MLflow)."""
    from lightning_modules.services.tracking import log_result_artifacts

    run_dir, why = selected_run(selection_path, run_dirs, seed)
    record = draw_cluster_figures(run_dir, embeddings_path, out_dir, dataset, map_path,
                                  title=f"{parse_title(run_dir)} ({why})")
    if tracking:
        log_result_artifacts(**tracking, folder=run_dir, paths=[Path(out_dir) / name for name in record["figures"]],
                             artifact_dir="figures")
    return record


def _img(path: Path, width: str) -> str:
    import base64

    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:{width}" alt="{path.parent.name}/{path.name}">'


def figures_html(folders: list[str | Path]) -> str:
    """The clustering report's look at the clusters: the cluster x class matrices of all settings side by side
    (the long-tailed and coarse variants beside the original), then per setting its map and its gallery."""
    from lightning_modules.core.io import read_json

    shown = [(Path(folder), read_json(Path(folder) / "gallery.json")) for folder in folders
             if (Path(folder) / "gallery.json").exists()]
    if not shown:
        return "<p>No figures in this sweep.</p>"
    matrices = [folder / "matrix.png" for folder, _ in shown if (folder / "matrix.png").exists()]
    parts = []
    if matrices:
        parts.append("<h3>Cluster × class matrices</h3><div style='display:flex;flex-wrap:wrap;gap:8px'>"
                     + "".join(_img(path, "32%") for path in matrices) + "</div>")
    for folder, record in shown:
        parts.append(f"<h3>{parse_title(record['run'])}</h3><p>{record['run']}; members ranked by "
                     f"{record['confidence']}.</p>")
        parts += [_img(folder / name, "100%") for name in ("map.png", "gallery.png") if name in record["figures"]]
        if "gallery.png" not in record["figures"]:  # features, not images: row ids and labels
            parts.append("<ul>" + "".join(
                f"<li>cluster {c['cluster']} ({c['size']}): rows {c['rows']}"
                + (f", labels {c['labels']}" if c["labels"] else "") + "</li>" for c in record["clusters"]) + "</ul>")
    return "\n".join(parts)


def parse_title(run_dir: str | Path) -> str:
    from lightning_modules.core.layout import parse

    run = parse(run_dir)
    return f"{run.dataset}/{run.backbone}: {run.method} K = {run.k}" if run else str(run_dir)
