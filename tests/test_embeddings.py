import json

import numpy as np
import pytest

from lightning_modules.backbones import build_backbone
from lightning_modules.data import load_dataset
from lightning_modules.embeddings.artifact import artifact_paths, check_embeddings, read_embeddings, write_embeddings
from lightning_modules.embeddings.extract import embed_images, extract_dataset_embeddings
from lightning_modules.core.io import atomic_path
from lightning_modules.core.registry import UnknownNameError


def test_pixels_embedding_is_the_scaled_image(tmp_path, digits_pixels):
    x, y = digits_pixels
    meta = extract_dataset_embeddings("digits", {"source": "digits", "split": "all"}, "all", "pixels", tmp_path,
                                      batch_size=100, progress=False)
    embeddings, labels = read_embeddings(tmp_path, "all")
    np.testing.assert_allclose(embeddings, x, atol=1e-7)  # load_digits().data / 16, row for row
    np.testing.assert_array_equal(labels, y)
    assert isinstance(embeddings, np.memmap)
    assert meta["backbone_spec"] == "pixels" and meta["split"] == "all"
    on_disk = json.loads(artifact_paths(tmp_path, "all")["meta"].read_text())
    assert on_disk["count"] == 1797 and on_disk["dims"] == 64 and on_disk["dtype"] == "float32"
    assert len(on_disk["dataset_fingerprint"]) == 64


def test_float16_storage(tmp_path):
    extract_dataset_embeddings("digits", {"source": "digits"}, "test", "pixels", tmp_path, dtype="float16",
                               progress=False)
    embeddings, labels = read_embeddings(tmp_path, "test")
    assert embeddings.dtype == np.float16 and len(embeddings) == len(labels) == 360


def test_batching_does_not_change_embeddings():
    data = load_dataset("digits", "test")
    model, transform = build_backbone("pixels")
    whole = embed_images(model, transform, data.images, batch_size=1000, progress=False)
    batched = embed_images(model, transform, data.images, batch_size=7, progress=False)
    np.testing.assert_array_equal(whole, batched)


def test_fingerprint_tracks_the_data():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.fingerprint() == load_dataset("digits", "train").fingerprint()
    assert train.fingerprint() != test.fingerprint()
    assert len(train) + len(test) == 1797
    assert np.bincount(test.labels).min() >= 35  # stratified: every digit in the test split


def test_unknown_backbone_and_bad_split_name_what_is_allowed():
    with pytest.raises(UnknownNameError, match="did you mean 'pixels'"):
        build_backbone("pixel")
    with pytest.raises(ValueError, match="allowed: all, train, test"):
        load_dataset("digits", "validation")


@pytest.mark.parametrize(
    "embeddings,labels,message",
    [
        (np.array([[0.0, np.nan], [1.0, 1.0]]), np.array([0, 1]), "NaN or inf"),
        (np.array([[0.0, np.inf]]), np.array([0]), "NaN or inf"),
        (np.zeros((3, 2)), np.zeros(2), "3 embeddings but 2 labels"),
        (np.zeros(3), np.zeros(3), "2-D"),
    ],
)
def test_unusable_embeddings_are_rejected_before_writing(tmp_path, embeddings, labels, message):
    with pytest.raises(ValueError, match=message):
        check_embeddings(embeddings, labels)
    with pytest.raises(ValueError):
        write_embeddings(tmp_path, "all", embeddings, labels, {})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["out.npy"]
