"""What every benchmark shares: this machine's fp32 GEMM peak (the denominator) and the results table."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path


GEMM_NOTE = "fp32 torch.mm 2048^2, best of 20"
_STARTED = time.perf_counter()


def step(what: str) -> None:
    """One line saying what a benchmark measures now, with the seconds since it started (make bench's progress)."""
    print(f"  [{time.perf_counter() - _STARTED:6.0f} s] {what}", flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB): /proc's VmHWM, not getrusage's ru_maxrss — Linux carries
    ru_maxrss across fork + exec, so a fresh child would report its parent's peak (a benchmark's own arrays)."""
    import re

    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def gemm_gflops(size: int = 2048, repeats: int = 20, dtype: str = "float32") -> float:
    """Best-of-`repeats` torch.mm throughput on square `dtype` matrices (fp32 unless a stage's arithmetic is
    float64 by design): this machine's practical peak (20 tries span ~2 s, so a short stall of the VM does not
    set the denominator)."""
    import torch

    a, b = (torch.randn(size, size, dtype=getattr(torch, dtype)) for _ in range(2))
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


@functools.cache
def measured_on() -> dict:
    """When and on what a table was measured: the date and this machine's GEMM peak beside every figure (the docs'
    figures page shows both; machines here differ 3x from day to day)."""
    import datetime
    import os

    return {"date": datetime.date.today().isoformat(), "gemm_gflops": round(gemm_gflops(), 1),
            "cores": len(os.sched_getaffinity(0))}


def report(name: str, rows: list[tuple[str, float, str]], out_dir: str | Path = "results/bench") -> None:
    """Print `rows` (metric, value, note) as a table and save them to `{out_dir}/{name}.json`, with `_measured`
    (measured_on) and the notes (`_notes`: the docs show them beside the values)."""
    width = max(len(metric) for metric, _, _ in rows)
    print(f"\n{name}")
    for metric, value, note in rows:
        print(f"  {metric:<{width}}  {value:>12.4g}  {note}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = {**{m: v for m, v, _ in rows}, "_measured": measured_on(), "_notes": {m: n for m, _, n in rows if n}}
    (out / f"{name}.json").write_text(json.dumps(table, indent=2) + "\n")
