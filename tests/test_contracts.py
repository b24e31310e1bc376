"""Fuzzing the input contracts (lightning_modules.core.contracts): a seeded generator writes random malformed variants
of every user file and the loader the workflow calls either returns the right data or stops with one line that
names the file and says what to do -- never another exception, never a silent coercion."""

import json

import numpy as np
import pytest

from lightning_modules.core.contracts import InputError, read_config_file, read_hierarchy
from lightning_modules.data import load_dataset

CASES = 150  # per artifact kind; seeded, so every run tries the same variants


def _valid_features(rng):
    rows, dims = int(rng.integers(2, 40)), int(rng.integers(1, 12))
    return rng.standard_normal((rows, dims)).astype(rng.choice([np.float32, np.float16, np.float64]))


def _malformed_features(rng, path):
    """(what was written, expected message fragment or None when the file is valid)."""
    features = _valid_features(rng)
    kind = rng.choice(["valid", "valid-int", "nan", "inf", "bool", "complex", "text", "object", "1d", "3d",
                       "one-row", "no-dims", "truncated", "garbage", "empty"])
    if kind == "valid":
        np.save(path, features)
        return features, None
    if kind == "valid-int":
        features = rng.integers(-5, 5, size=features.shape).astype(np.int32)
        np.save(path, features)
        return features, None
    if kind in ("nan", "inf"):
        rows = rng.choice(len(features), size=int(rng.integers(1, len(features) + 1)), replace=False)
        features[rows, rng.integers(0, features.shape[1], len(rows))] = np.nan if kind == "nan" else -np.inf
        np.save(path, features)
        return features, f"has {len(rows)} rows with NaN or inf"
    shaped = {"bool": features > 0, "complex": features.astype(np.complex64), "text": features.astype(str),
              "1d": features[:, 0], "3d": features[None], "one-row": features[:1], "no-dims": features[:, :0]}
    if kind in shaped:
        np.save(path, shaped[kind])
        return shaped[kind], {"bool": "dtype bool", "complex": "dtype complex64", "text": "dtype <U",
                              "1d": "expected a 2-D array", "3d": "expected a 2-D array",
                              "one-row": "at least 2 rows", "no-dims": "at least 2 rows and one dimension"}[kind]
    if kind == "object":
        np.save(path, np.array([features[0], "x"], dtype=object), allow_pickle=True)
        return None, "holds Python objects"
    np.save(path, features)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: int(rng.integers(1, len(data) - 1))],
                      "garbage": rng.bytes(int(rng.integers(1, 300))), "empty": b""}[kind])
    return None, "is not a readable .npy file"


def _check_one_line(error: InputError, path) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message and "; " in message, message


def test_fuzzed_embedding_files(tmp_path, record_property):
    record_property("cases", CASES)  # counted by benchmarks/reliability.py
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(CASES):
        path = tmp_path / f"features{case}.npy"
        written, expected = _malformed_features(rng, path)
        if expected is None:
            data = load_dataset("embeddings", "all", {"path": str(path)})
            np.testing.assert_array_equal(data.images, written.astype(np.float32))
            assert (data.labels == -1).all() and data.images.dtype == np.float32
            outcomes["loaded"] += 1
            continue
        with pytest.raises(InputError) as raised:
            load_dataset("embeddings", "all", {"path": str(path)})
        _check_one_line(raised.value, path)
        assert expected in str(raised.value), (case, str(raised.value))
        outcomes["refused"] += 1
    assert outcomes["loaded"] > 5 and outcomes["refused"] > 100


def _malformed_labels(rng, path, rows):
    labels = rng.integers(-1, 5, size=rows)
    kind = rng.choice(["valid", "valid-uint", "float", "bool", "2d", "short", "long", "below-minus-one", "text",
                       "object", "garbage"])
    if kind == "valid":
        np.save(path, labels)
        return labels, None
    if kind == "valid-uint":
        labels = np.abs(labels).astype(np.uint8)
        np.save(path, labels)
        return labels, None
    variants = {"float": (labels.astype(np.float64), "labels must be integers"),
                "bool": (labels > 0, "labels must be integers"),
                "2d": (labels[:, None], "expected one label per row"),
                "short": (labels[:-1], f"has {rows - 1} labels for {rows} embedding rows"),
                "long": (np.append(labels, 0), f"has {rows + 1} labels for {rows} embedding rows"),
                "below-minus-one": (np.where(np.arange(rows) == 0, -2 - rng.integers(0, 9), labels),
                                    "labels are class indices >= 0, or -1"),
                "text": (labels.astype(str), "labels must be integers")}
    if kind in variants:
        np.save(path, variants[kind][0])
        return None, variants[kind][1]
    if kind == "object":
        np.save(path, np.array([1, "a"], dtype=object), allow_pickle=True)
        return None, "holds Python objects"
    path.write_bytes(rng.bytes(int(rng.integers(1, 200))))
    return None, "is not a readable .npy file"


def test_fuzzed_label_files(tmp_path, record_property):
    record_property("cases", CASES)  # counted by benchmarks/reliability.py
    rng = np.random.default_rng(1)
    for case in range(CASES):
        features = rng.standard_normal((int(rng.integers(2, 30)), 3)).astype(np.float32)
        np.save(tmp_path / f"x{case}.npy", features)
        path = tmp_path / f"y{case}.npy"
        written, expected = _malformed_labels(rng, path, len(features))
        options = {"path": str(tmp_path / f"x{case}.npy"), "labels": str(path)}
        if expected is None:
            data = load_dataset("embeddings", "all", options)
            np.testing.assert_array_equal(data.labels, written)
            assert len(data.label_names) == max(0, int(written.max()) + 1)
            continue
        with pytest.raises(InputError) as raised:
            load_dataset("embeddings", "all", options)
        _check_one_line(raised.value, path)
        assert expected in str(raised.value), (case, str(raised.value))


@pytest.mark.parametrize("names, message", [(["a", "b"], "2 class names, but the labels use 3 classes"),
                                            (["a", "b", "a"], "class name 'a' appears twice"),
                                            ("abc", "expected a list of class names")])
def test_class_names_are_checked_against_the_labels(tmp_path, names, message):
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    with pytest.raises(InputError, match=message):
        load_dataset("embeddings", "all", {"path": str(tmp_path / "x.npy"), "labels": str(tmp_path / "y.npy"),
                                           "label_names": names})


def test_fuzzed_hierarchy_files(tmp_path, record_property):
    record_property("cases", CASES)  # counted by benchmarks/reliability.py
    rng = np.random.default_rng(2)
    classes = ["n01", "n02", "n03"]
    valid = {"n01": "animal", "n02": "animal", "n03": "plant"}
    for case in range(CASES):
        path = tmp_path / f"h{case}.json"
        kind = rng.choice(["valid", "syntax", "list", "number-values", "missing", "binary"])
        if kind == "valid":
            path.write_text(json.dumps(valid))
            assert read_hierarchy(path, classes) == valid
            continue
        if kind == "syntax":
            text = json.dumps(valid, indent=1)
            cut = int(rng.integers(1, len(text) - 1))
            path.write_text(text[:cut] + rng.choice([",", "}", "'", ""]) + text[cut + 1:] * int(rng.integers(0, 2)))
            try:  # a mutation can leave valid JSON: the same mapping (then it loads) or another shape or content
                parsed = json.loads(path.read_text())
                if isinstance(parsed, dict) and all(isinstance(v, str) for v in parsed.values()) \
                        and set(classes) <= set(parsed):
                    assert read_hierarchy(path, classes) == parsed
                    continue
                expected = ""
            except json.JSONDecodeError:
                expected = "line "
        else:
            content = {"list": json.dumps(list(valid)), "number-values": json.dumps({c: 1 for c in classes}),
                       "missing": json.dumps({"n01": "animal"})}.get(kind)
            if content is None:
                path.write_bytes(b"\xff\xfe" + rng.bytes(int(rng.integers(1, 50))))
            else:
                path.write_text(content)
            expected = {"list": "must be one JSON object", "number-values": "must be one JSON object",
                        "missing": "maps no coarse class for 'n02'", "binary": ""}[kind]
        with pytest.raises(InputError) as raised:
            read_hierarchy(path, classes)
        _check_one_line(raised.value, path)
        assert expected in str(raised.value), (kind, str(raised.value))


def test_a_config_syntax_error_names_its_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("sweep: x\ndatasets:\n  digits: {source: digits\nbackbones: [pixels]\n")
    with pytest.raises(InputError, match=r"config.yaml line 4, column \d+: .*; fix the YAML there"):
        read_config_file(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(InputError, match="the top level must be a mapping"):
        read_config_file(path)
