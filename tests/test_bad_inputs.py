"""A catalogue of bad inputs, each run through the real `snakemake` command line: the run must exit non-zero
with one line that names the offending key or path and the fix, and leave no partial artifact behind.

Config mistakes stop before any job (stderr is that one line, no results folder); mistakes only a job can
see (a corrupt image, NaN features, an unreadable weights file) fail that job with one `error:` line."""

import copy

import numpy as np
import pytest
import yaml

from conftest import run_workflow

BASE = {
    "sweep": "bad",
    "datasets": {"digits": {"source": "digits", "split": "test"}},
    "backbones": ["pixels"],
    "knn": {"k": 5},
    "clustering": {"k": [3], "seeds": [0], "methods": {"kmeans": {"n_init": 1, "max_iter": 5}}},
}
OOD = {
    "datasets": {"digits-04": {"source": "digits", "split": "train", "classes": [0, 1, 2, 3, 4]},
                 "digits": {"source": "digits", "split": "test"}},
    "ood": {"pairs": [{"in": "digits-04", "out": {"dataset": "digits", "classes": [5, 6, 7, 8, 9]}}],
            "scorers": ["knn1"]},
}


def image_folder(tmp_path, corrupt=False, empty=False):
    from test_datasets import write_image_folder

    root = write_image_folder(tmp_path / "data" / "images", classes=("a", "b"), per_class=4, size=(8, 8), mode="L")
    if corrupt:
        (root / "b" / "broken.png").write_bytes(b"not an image")
    if empty:
        (root / "c").mkdir()
    return str(root)


def features(tmp_path, rows=40, nan_rows=0, labels=None):
    folder = tmp_path / "data" / "feats"
    folder.mkdir(parents=True)
    x = np.random.default_rng(0).normal(size=(rows, 8)).astype(np.float32)
    x[:nan_rows] = np.nan
    np.save(folder / "all.npy", x)
    np.save(folder / "all.labels.npy", np.arange(labels if labels is not None else rows) % 2)
    return {"source": "embeddings", "path": str(folder / "{split}.npy"), "labels": str(folder / "{split}.labels.npy")}


def weights_file(tmp_path, kind):
    import argparse

    import torch

    path = tmp_path / "data" / ("w.safetensors" if kind == "garbage" else "w.pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "garbage":
        path.write_bytes(b"\x00garbage")
    else:  # a checkpoint that only unpickling could load
        torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, path)
    return str(path)


def merge(base, change):
    merged = copy.deepcopy(base)
    for key, value in change.items():
        merged[key] = value
    return merged


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return config


def _rename(config, dotted, new):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[new] = node.pop(last)
    return config


# (id, config from tmp_path, fragments of the one line)
CONFIG_MISTAKES = [
    ("unknown dataset source", lambda t: _set(copy.deepcopy(BASE), "datasets.digits.source", "digitz"),
     ["datasets.digits.source", "did you mean 'digits'"]),
    ("unknown backbone", lambda t: _set(copy.deepcopy(BASE), "backbones", ["timmm/vit_small"]),
     ["backbones[0]", "did you mean 'timm'"]),
    ("unknown clustering method", lambda t: _set(copy.deepcopy(BASE), "clustering.methods", {"kmeens": {}}),
     ["clustering.methods.kmeens", "did you mean 'kmeans'"]),
    ("unknown OOD scorer", lambda t: merge(BASE, {**OOD, "ood": {**OOD["ood"], "scorers": ["knn2"]}}),
     ["ood.scorers", "unknown OOD scorer 'knn2'", "allowed:"]),
    ("missing data root", lambda t: _set(copy.deepcopy(BASE), "datasets", {"c10": {"source": "cifar10", "split": "train",
                                                                                     "root": str(t / "nowhere")}}),
     ["datasets.c10.root", "nowhere", "download the data sets there"]),
    ("K below 2", lambda t: _set(copy.deepcopy(BASE), "clustering.k", [1]), ["clustering.k[0] = 1", ">= 2"]),
    ("K above N", lambda t: _set(copy.deepcopy(BASE), "clustering.k", [400]),
     ["clustering.k = 400", "360 samples", "allowed: 2..360"]),
    ("duplicate K", lambda t: _set(copy.deepcopy(BASE), "clustering.k", [3, 3]), ["clustering.k lists 3 more than once"]),
    ("kNN k not below N", lambda t: _set(copy.deepcopy(BASE), "knn.k", 360), ["knn.k = 360", "allowed: 1..359"]),
    ("IVF probing more cells than it has", lambda t: _set(_set(_set(copy.deepcopy(BASE), "knn.index", "ivf"),
                                                               "knn.nlist", 16), "knn.nprobe", 64),
     ["knn.nprobe = 64 is larger than knn.nlist", "allowed: 1..16"]),
    ("IVF with more cells than points", lambda t: _set(_set(copy.deepcopy(BASE), "knn.index", "ivf"), "knn.nlist", 4000),
     ["knn.nlist = 4000 cells cannot be trained", "use a smaller knn.nlist or knn.index: exact"]),
    ("type error", lambda t: _set(copy.deepcopy(BASE), "clustering.seeds", "0"), ["clustering.seeds", "wrong type"]),
    ("misspelt key", lambda t: _rename(copy.deepcopy(BASE), "clustering.methods.kmeans.n_init", "ninit"),
     ["unknown key 'clustering.methods.kmeans.ninit' (did you mean 'n_init'?)"]),
    ("misspelt top-level key", lambda t: _rename(copy.deepcopy(BASE), "knn", "kNN"),
     ["unknown key 'kNN' (did you mean 'knn'?)"]),
    ("OOD classes overlap", lambda t: merge(BASE, {**OOD, "ood": {**OOD["ood"], "pairs": [
        {"in": "digits-04", "out": {"dataset": "digits", "classes": [4, 5]}}]}}), ["share classes 4", "set `classes`"]),
    ("OOD fit split holds the test split", lambda t: merge(BASE, {**OOD, "ood": {**OOD["ood"], "pairs": [
        {"in": "digits", "out": "digits-04"}]}}), ["split 'test'", "set datasets.digits.split to a training split"]),
    ("zero-shot without a text tower", lambda t: merge(BASE, {**OOD, "ood": {**OOD["ood"], "scorers": ["zeroshot-msp"]}}),
     ["zeroshot-msp needs a backbone with a text tower", "none of 'pixels' has one"]),
    ("supervised scorer on unlabelled data", lambda t: merge(BASE, {
        "datasets": {"noise": {"source": "noise", "split": "train"}, "digits": {"source": "digits", "split": "test"}},
        "ood": {"pairs": [{"in": "noise", "out": "digits"}], "scorers": ["probe-msp"]}}),
     ["'probe-msp' needs the ID labels", "use an unsupervised scorer"]),
    ("PLP without a text tower", lambda t: merge(BASE, {**OOD, "ood": {**OOD["ood"], "scorers": ["plp-msp"]}}),
     ["plp-msp needs a backbone with a text tower", "none of 'pixels' has one"]),
    ("PLP on data without class names", lambda t: merge(BASE, {
        "datasets": {"noise": {"source": "noise", "split": "train"}, "digits": {"source": "digits", "split": "test"}},
        "ood": {"pairs": [{"in": "noise", "out": "digits"}], "scorers": ["plp-energy"]}}),
     ["'plp-energy' needs the ID class names", "has none"]),
    ("attack on feature vectors", lambda t: merge(BASE, {
        "datasets": {**OOD["datasets"], "feats": {"source": "synthetic", "dims": 64}},
        "ood": {"pairs": [{"in": "digits-04", "out": "feats"}], "scorers": ["knn1"],
                "adversarial": {"scorers": ["knn1"]}}}), ["ood.adversarial needs images", "feature vectors"]),
    ("dataset name that climbs out of results", lambda t: _rename(copy.deepcopy(BASE), "datasets.digits", ".."),
     ["is not a valid name", "starting with a letter or digit"]),
    ("dataset outside data_roots", lambda t: merge(BASE, {"data_roots": [str(t / "data")], "datasets": {
        "imgs": {"source": "imagefolder", "root": str(t / "data" / ".." / "elsewhere")}}}),
     ["datasets.imgs.root", "outside data_roots", "add its folder to data_roots"]),
    ("diffusion image size the UNet cannot downsample", lambda t: merge(BASE, {"diffusion": {
        "datasets": ["digits"], "image_size": 10, "network": {"name": "ddpmpp", "channels": [8, 16, 32]}}}),
     ["diffusion.image_size = 10 cannot be downsampled 2 times", "use a multiple of 4"]),
    ("weights outside data_roots", lambda t: merge(BASE, {"data_roots": [str(t / "data")], "backbones": [
        {"spec": "timm/vit_tiny_patch16_224", "weights": str(t / "w.safetensors")}]}),
     ["backbones[0].weights", "outside data_roots"]),
]


def run_snakemake(tmp_path, config):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return run_workflow(tmp_path, timeout=300)


@pytest.mark.parametrize("make_config,expected", [m[1:] for m in CONFIG_MISTAKES], ids=[m[0] for m in CONFIG_MISTAKES])
def test_config_mistakes_stop_before_any_job_in_one_line(tmp_path, make_config, expected):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data").mkdir()
    result = run_snakemake(tmp_path, make_config(tmp_path))
    assert result.returncode != 0
    # Snakemake's own notice of the profile aside, the one line is all there is
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("Using profile")]
    assert len(lines) == 1 and lines[0].startswith("config error: "), result.stderr[-2000:]
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "results").exists()


# mistakes only the job that reads the data can see: (id, config from tmp_path, the failing job's output, fragments)
JOB_MISTAKES = [
    ("corrupt image file", lambda t: _set(copy.deepcopy(BASE), "datasets", {"imgs": {"source": "imagefolder",
                                                                                      "root": image_folder(t, corrupt=True)}}),
     "imgs/pixels/embeddings/all.npy", ["broken.png"]),
    ("empty class folder", lambda t: _set(copy.deepcopy(BASE), "datasets", {"imgs": {"source": "imagefolder",
                                                                                      "root": image_folder(t, empty=True)}}),
     "imgs/pixels/embeddings/all.npy", ["images/c", "holds no images"]),
    ("labels and embeddings of different lengths", lambda t: _set(copy.deepcopy(BASE), "datasets",
                                                                   {"feats": features(t, labels=39)}),
     "feats/pixels/embeddings/all.npy", ["all.labels.npy has 39 labels for 40 embedding rows", "one label per row"]),
    ("NaN in embeddings", lambda t: _set(copy.deepcopy(BASE), "datasets", {"feats": features(t, nan_rows=3)}),
     "feats/pixels/embeddings/all.npy", ["feats/all.npy has 3 rows with NaN or inf", "drop or re-extract"]),
    ("K above N where N is only known from the data", lambda t: _set(
        _set(copy.deepcopy(BASE), "datasets", {"imgs": {"source": "imagefolder", "root": image_folder(t)}}),
        "clustering.k", [9]), "imgs/pixels/clusters/kmeans/k9/seed0/metrics.json",
     ["clustering.k: K=9 must be between 2 and the number of samples (8)"]),
    ("unreadable weights file", lambda t: _set(copy.deepcopy(BASE), "backbones", [
        {"spec": "timm/vit_tiny_patch16_224", "weights": weights_file(t, "garbage")}]),
     "digits/timm-vit_tiny_patch16_224/embeddings/test.npy", ["w.safetensors is not a readable safetensors file"]),
    ("checkpoint that needs pickle", lambda t: _set(copy.deepcopy(BASE), "backbones", [
        {"spec": "timm/vit_tiny_patch16_224", "weights": weights_file(t, "pickle")}]),
     "digits/timm-vit_tiny_patch16_224/embeddings/test.npy", ["w.pt cannot be read as plain tensors",
                                                               "only .safetensors or weights-only torch files"]),
]


@pytest.mark.parametrize("make_config,output,expected", [m[1:] for m in JOB_MISTAKES], ids=[m[0] for m in JOB_MISTAKES])
def test_job_mistakes_fail_that_job_in_one_line_without_partial_artifacts(tmp_path, make_config, output, expected):
    result = run_snakemake(tmp_path, make_config(tmp_path))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in expected:
        assert fragment in errors[0], errors[0]
    assert "(details: " in errors[0]  # the traceback is in the job's log, not on the terminal
    results = tmp_path / "results"
    assert not (results / output).exists()
    assert not [p for p in results.rglob("*") if ".tmp." in p.name]
    assert not (results / "tables").exists()
