"""Atomic artifact writes: write to a temporary name in the same folder, then rename, so a killed job
never leaves a file that looks complete."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # hidden name, same suffix: globs skip it and tools that check extensions accept it
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; artifacts get the usual permissions
    try:
        yield tmp
        _fsync(tmp)  # the bytes reach the disk before the name does
        os.replace(tmp, path)
    except OSError as error:
        if error.errno == errno.ENOSPC and error.filename in (None, str(tmp)):  # a plain write names no file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def arrays_fingerprint(*arrays, rows: int = 64) -> str:
    """A cheap fingerprint of arrays (memory maps included): shapes, dtypes and the bytes of up to `rows` evenly
    spaced rows of each (a changed data set changes it; reading stays O(rows))."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.asarray(array) if not hasattr(array, "shape") else array
        digest.update(repr((tuple(array.shape), str(array.dtype))).encode())
        if len(array.shape) and array.shape[0]:
            picks = np.unique(np.linspace(0, array.shape[0] - 1, min(rows, array.shape[0])).astype(np.int64))
            digest.update(np.ascontiguousarray(np.asarray(array[picks])).tobytes())
    return digest.hexdigest()


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        try:
            np.save(handle, array, allow_pickle=False)
        except OSError as error:
            # numpy reports a short write as "N requested and M written", without an errno: name a full disk as such
            if error.errno is None and shutil.disk_usage(tmp.parent).free < array.nbytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from error
            raise


def save_torch(path: str | os.PathLike, obj) -> None:
    """`torch.save`, atomically. Serialised in memory first (as Lightning's own `_atomic_save`): a full disk then
    fails in a plain write, as OSError ENOSPC, not inside torch's zip writer as an opaque RuntimeError."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(buffer.getbuffer())


def load_npy(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def _json_safe(value):
    """NaN/inf are not JSON; they become null (e.g. ACC is undefined when K exceeds the class count)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def release_rows(array: np.ndarray, rows: slice) -> None:
    """Drop the pages of `array[rows]` from this process's resident memory when `array` is a read-only memory
    map (the OS page cache keeps them; a later read maps them back): a stage streaming an artifact then holds
    one chunk of it, not the whole file. A no-op for arrays in memory."""
    import mmap as mmap_module

    mapping = _mapping(array)
    if mapping is None or not hasattr(mapping[0], "madvise") or array.ndim == 0 or not array.flags.c_contiguous:
        return
    base = mapping[0]
    start, stop, _ = rows.indices(len(array))
    if stop <= start:
        return
    buffer_address = np.frombuffer(base, dtype=np.uint8).ctypes.data
    first = array.ctypes.data - buffer_address + start * array.strides[0]
    last = first + (stop - start) * array.strides[0]
    page = mmap_module.PAGESIZE
    aligned_first, aligned_last = -(-first // page) * page, min(last // page * page, len(base))
    if aligned_last > aligned_first:
        base.madvise(mmap_module.MADV_DONTNEED, aligned_first, aligned_last - aligned_first)


GATHER_MAPPED_BYTES = 64 * 2**20


def gather_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`array[rows]` (a copy) for 1-D integer `rows`; a memory map's rows are read with pread, not through the
    mapping. A fault in a file mapping maps the whole page-cache folio around the row (up to 2 MiB on this
    kernel: one gather of 256 random 1 KiB rows mapped 70 MiB, measured), so random gathers through a mapping
    grow resident memory to the whole file; pread copies only the rows asked for. Arrays under
    GATHER_MAPPED_BYTES are indexed through the mapping: a pread costs ~5 us per row, their whole file less."""
    mapping = _mapping(array)
    rows = np.asarray(rows, dtype=np.int64)
    if (mapping is None or array.nbytes < GATHER_MAPPED_BYTES or not array.flags.c_contiguous
            or getattr(array, "filename", None) is None):
        return np.array(array[rows])
    base, file_start = mapping
    first_byte = file_start + array.ctypes.data - np.frombuffer(base, dtype=np.uint8).ctypes.data
    stride = array.strides[0]
    out = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
    target = memoryview(out.reshape(-1).view(np.uint8))
    if len(rows) and (rows.min() < -len(array) or rows.max() >= len(array)):
        raise IndexError(f"row index out of range for {len(array)} rows")
    with open(array.filename, "rb", buffering=0) as handle:
        descriptor = handle.fileno()
        for position, row in enumerate(rows % max(1, len(array))):
            os.preadv(descriptor, [target[position * stride:(position + 1) * stride]], first_byte + int(row) * stride)
    return out


def _mapping(array: np.ndarray):
    """(the mmap under `array`, the file offset where that mmap starts) or None when `array` is not mapped."""
    import mmap as mmap_module

    base, owner = None, array  # np.asarray(memmap) and slices are plain views: find the mapping below them
    while owner is not None and base is None:
        base = owner if isinstance(owner, mmap_module.mmap) else getattr(owner, "_mmap", None)
        owner = getattr(owner, "base", None)
    if base is None:
        return None
    offset = getattr(array, "offset", 0)  # np.memmap maps from the allocation boundary below its offset
    return base, offset - offset % mmap_module.ALLOCATIONGRANULARITY


def nonfinite_rows(array: np.ndarray, chunk_rows: int = 65536) -> int:
    """How many rows of a 2-D array (memory-mapped at any size) hold NaN or inf, counted chunk by chunk."""
    bad = 0
    for rows in row_chunks(len(array), chunk_rows):
        bad += int((~np.isfinite(array[rows])).any(axis=1).sum())
        release_rows(array, rows)
    return bad


def row_chunks(n: int, rows: int):
    """Slices covering range(n) in blocks of `rows`: how stages stream a memory-mapped artifact."""
    for start in range(0, n, rows):
        yield slice(start, min(n, start + rows))
