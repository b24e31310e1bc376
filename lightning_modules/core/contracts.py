"""The contract of every file a user hands the platform, checked where the file is first read: one line naming
the file, what is wrong with it and what to do (never a library's traceback, never a silent coercion).

- embeddings `.npy`: readable without pickle, a real numeric dtype (float or integer; not bool, complex, text
  or objects), 2-D (samples, dims), at least `min_rows` rows and one dim, every value finite;
- labels `.npy`: an integer dtype, 1-D, one per embedding row, each >= -1 (-1 = unknown);
- class names: text, one per class index the labels use, no duplicates;
- hierarchy `.json`: an object {class folder: coarse class name}, covering every class folder;
- config `.yaml`: parseable YAML whose top level is a mapping (a syntax error names its line and column).

`python -m lightning_modules.core.contracts config FILE` checks a config file's syntax (make demo runs it first:
Snakemake's own message does not say where the error is)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lightning_modules.core.io import nonfinite_rows


class InputError(ValueError):
    """A user file breaks its contract; the message is the one line to show."""


def read_npy(path, key: str) -> np.ndarray:
    """A `.npy` file as a read-only memory map (or in memory where it cannot be mapped)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{key}: {path} does not exist or is not a file; give a .npy file")
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":  # np.load would take anything else for a pickle
            raise InputError(f"{key}: {path} is not a readable .npy file (no .npy header); save it with np.save")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        if any(mark in str(error) for mark in ("allow_pickle", "Object arrays", "Python objects")):
            raise InputError(f"{key}: {path} holds Python objects (a pickled array); save a numeric array: "
                             f"np.save(path, np.asarray(values, dtype=np.float32))") from None
        raise InputError(f"{key}: {path} is not a readable .npy file ({error}); re-save it with np.save") from None
    except (OSError, EOFError) as error:
        raise InputError(f"{key}: {path} is not a readable .npy file ({error}); re-save it with np.save") from None


def check_embeddings_array(array: np.ndarray, path, key: str, min_rows: int = 2) -> None:
    kind = array.dtype.kind
    if kind not in "fiu":
        raise InputError(f"{key}: {path} has dtype {array.dtype}; embeddings must be real numbers: save them as "
                         f"float32 or float16")
    if array.ndim != 2:
        raise InputError(f"{key}: {path} holds shape {array.shape}; expected a 2-D array (samples, dims)")
    if array.shape[1] < 1 or len(array) < min_rows:
        raise InputError(f"{key}: {path} holds shape {array.shape}; the stages need at least {min_rows} rows and "
                         f"one dimension")
    if kind == "f":
        bad = nonfinite_rows(array)
        if bad:
            raise InputError(f"{key}: {path} has {bad} rows with NaN or inf; drop or re-extract those samples")


def check_labels_array(labels: np.ndarray, path, key: str, n_rows: int) -> None:
    if labels.dtype.kind not in "iu":
        raise InputError(f"{key}: {path} has dtype {labels.dtype}; labels must be integers (-1 = unknown): save "
                         f"them with np.save(path, labels.astype(np.int64))")
    if labels.ndim != 1:
        raise InputError(f"{key}: {path} holds shape {labels.shape}; expected one label per row, a 1-D array")
    if len(labels) != n_rows:
        raise InputError(f"{key}: {path} has {len(labels)} labels for {n_rows} embedding rows; give one label per row")
    if len(labels) and int(labels.min()) < -1:
        raise InputError(f"{key}: {path} holds label {int(labels.min())}; labels are class indices >= 0, or -1 for "
                         f"unknown")


def check_class_names(names, n_classes: int, key: str) -> list[str]:
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise InputError(f"{key}: expected a list of class names (text), got {type(names).__name__}")
    if len(names) < n_classes:
        raise InputError(f"{key}: {len(names)} class names, but the labels use {n_classes} classes; give one name "
                         f"per class index")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"{key}: class name '{duplicates[0]}' appears twice; names must be unique")
    return list(names)


def read_hierarchy(path, classes: list[str], key: str = "hierarchy") -> dict[str, str]:
    """{class folder: coarse class} for every class of `classes`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{key}: {path} does not exist; give a JSON file {{class: coarse class}}")
    try:
        mapping = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise InputError(f"{key}: {path} is not text; give a JSON file {{class: coarse class}}") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{key}: {path} line {error.lineno}, column {error.colno}: {error.msg}; fix the JSON "
                         f"there") from None
    if not isinstance(mapping, dict) or not all(isinstance(value, str) for value in mapping.values()):
        raise InputError(f"{key}: {path} must be one JSON object mapping each class folder to its coarse class "
                         f"name (text); write {{\"<class folder>\": \"<coarse class>\", ...}}")
    unmapped = [name for name in classes if name not in mapping]
    if unmapped:
        raise InputError(f"{key}: {path} maps no coarse class for '{unmapped[0]}' ({len(unmapped)} classes "
                         f"unmapped); add them")
    return mapping


def read_config_file(path) -> dict:
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; give a config file (config/config.yaml is the demo's)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"{path}{where}: {problem}; fix the YAML there") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: the top level must be a mapping (sweep:, datasets:, ...), got "
                         f"{type(config).__name__}")
    return config


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "config":
        sys.exit("usage: python -m lightning_modules.core.contracts config FILE")
    try:
        read_config_file(sys.argv[2])
    except InputError as error:
        sys.exit(str(error))
