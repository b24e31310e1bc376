"""Dataset sources through their real loaders, on files the tests generate."""

import json
import pickle

import numpy as np
import pytest

from lightning_modules.data import check_options, load_dataset
from lightning_modules.embeddings.extract import extract_dataset_embeddings
from lightning_modules.embeddings.artifact import read_embeddings


def write_cifar10(root, per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return root


def write_cifar100(root, count=6):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        fine = rng.integers(0, 100, count)
        data = {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8), b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine // 5).tolist()}
        (folder / split).write_bytes(pickle.dumps(data, protocol=2))
    meta = {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return root


def test_cifar10_reads_the_python_format(tmp_path):
    write_cifar10(tmp_path)
    train, test = load_dataset("cifar10", "train", {"root": str(tmp_path)}), load_dataset("cifar10", "test", {"root": str(tmp_path)})
    assert train.images.shape == (20, 3, 32, 32) and len(test) == 4
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    np.testing.assert_allclose(train.images[0], raw[b"data"][0].reshape(3, 32, 32) / 255.0, atol=1e-7)
    assert train.labels[:4].tolist() == raw[b"labels"] and train.label_names[3] == "c3"


def test_cifar100_has_coarse_labels(tmp_path):
    write_cifar100(tmp_path)
    data = load_dataset("cifar100", "train", {"root": str(tmp_path)})
    np.testing.assert_array_equal(data.coarse_labels, data.labels // 5)
    assert len(data.coarse_names) == 20 and len(data.label_names) == 100


def test_cifar_files_that_would_run_code_are_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing builtins.print"):
        load_dataset("cifar10", "test", {"root": str(tmp_path)})


def test_missing_cifar_root_names_the_key_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"root: .*cifar-10-batches-py does not exist; download CIFAR-10"):
        load_dataset("cifar10", "train", {"root": str(tmp_path)})


def write_image_folder(root, classes=("cat", "dog"), per_class=3, size=(10, 12), mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[0], size[1], 3) if mode == "RGB" else size
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")
    return root


def test_image_folder_reads_classes_lazily_with_a_hierarchy(tmp_path):
    write_image_folder(tmp_path / "images", classes=("cat", "dog", "oak"))
    (tmp_path / "hierarchy.json").write_text(json.dumps({"cat": "animal", "dog": "animal", "oak": "plant"}))
    data = load_dataset("imagefolder", "all", {"root": str(tmp_path / "images"), "hierarchy": str(tmp_path / "hierarchy.json")})
    assert data.label_names == ["cat", "dog", "oak"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.coarse_names == ["animal", "plant"] and data.coarse_labels.tolist() == [0] * 6 + [1] * 3
    image = data.images[4]
    assert image.shape == (3, 10, 12) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    fingerprint = data.fingerprint()
    (tmp_path / "images" / "oak" / "0.png").write_bytes((tmp_path / "images" / "cat" / "0.png").read_bytes())
    assert load_dataset("imagefolder", "all", {"root": str(tmp_path / "images")}).fingerprint() != fingerprint


def test_image_folder_errors_name_the_file_or_folder(tmp_path):
    write_image_folder(tmp_path / "images")
    (tmp_path / "images" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*empty holds no images"):
        load_dataset("imagefolder", "all", {"root": str(tmp_path / "images")})
    (tmp_path / "images" / "empty").rmdir()
    (tmp_path / "images" / "cat" / "1.png").write_bytes(b"not a png")
    data = load_dataset("imagefolder", "all", {"root": str(tmp_path / "images")})
    with pytest.raises(ValueError, match=r"image file .*cat/1.png cannot be read"):
        data.images[1]


def test_grayscale_image_folder_feeds_a_backbone(tmp_path):
    write_image_folder(tmp_path / "images", mode="L", size=(8, 8))
    extract_dataset_embeddings("shapes", {"source": "imagefolder", "root": str(tmp_path / "images")}, "all",
                               "timm/vit_tiny_patch16_224", tmp_path / "emb", batch_size=4, progress=False,
                               backbone_options={"pretrained": False})
    embeddings, labels = read_embeddings(tmp_path / "emb", "all")
    assert embeddings.shape == (6, 192) and labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_bring_your_own_embeddings_pass_through_pixels(tmp_path):
    features = np.random.default_rng(0).random((7, 5), dtype=np.float32)
    np.save(tmp_path / "train.npy", features)
    np.save(tmp_path / "train.labels.npy", np.array([0, 1, 2, 0, 1, 2, 0]))
    cfg = {"source": "embeddings", "path": str(tmp_path / "{split}.npy"), "labels": str(tmp_path / "{split}.labels.npy")}
    extract_dataset_embeddings("mine", cfg, "train", "pixels", tmp_path / "emb", progress=False)
    embeddings, labels = read_embeddings(tmp_path / "emb", "train")
    np.testing.assert_array_equal(embeddings, features)
    assert labels.tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_synthetic_mixture_has_the_asked_for_imbalance_and_hierarchy():
    data = load_dataset("synthetic", "train", {"n_classes": 6, "dims": 4, "samples_per_class": 100, "imbalance_ratio": 10,
                                               "n_superclasses": 2, "seed": 3})
    counts = np.bincount(data.labels)
    assert counts[0] == 100 and counts[-1] == 10 and counts.max() / counts.min() == 10
    assert data.images.shape == (counts.sum(), 4)
    np.testing.assert_array_equal(data.coarse_labels, data.labels % 2)
    again = load_dataset("synthetic", "train", {"n_classes": 6, "dims": 4, "samples_per_class": 100, "imbalance_ratio": 10,
                                                "n_superclasses": 2, "seed": 3})
    np.testing.assert_array_equal(again.images, data.images)
    other_split = load_dataset("synthetic", "test", {"n_classes": 6, "dims": 4, "samples_per_class": 100,
                                                     "imbalance_ratio": 10, "n_superclasses": 2, "seed": 3})
    assert not np.array_equal(other_split.images, data.images)


def test_unknown_options_are_named_with_a_suggestion():
    with pytest.raises(TypeError, match=r"unknown key 'datasets.c.roots' \(did you mean 'root'\?\) for source 'cifar10'"):
        check_options("cifar10", {"roots": "/data"}, key_prefix="datasets.c.")
