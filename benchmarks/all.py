"""`make bench`: every benchmark in turn, each announced with what it measures and timed, then the summary.

    .venv/bin/python -m benchmarks.all

About 23 minutes on 2 cores (target: under 30; the kNN-graph comparison adds ~2.5 to the 20 measured before).
`make bench-scale` runs the 2,000,000-row scale benchmark this runs a 200,000-row variant of.
"""

from __future__ import annotations

import subprocess
import sys
import time

# (module, arguments, what it measures)
PARTS = [
    ("heads", [], "TEMI epoch time with 1 vs 16 heads, and a 100k x 384 epoch"),
    ("embed", [], "embedding extraction throughput: pixels and a random timm ViT"),
    # without --full: its N = 300k scaling point alone took ~15 of the 22 minutes (python -m benchmarks.clustering --full)
    ("clustering", [], "kNN graph and k-means against scikit-learn, scaling with N up to 100k, IVF against exact"),
    ("knn_graph", [], "the kNN graph of 100k rows by cell_search, faiss IVF, faiss HNSW and pynndescent, with recall"),
    ("ood", [], "knn1 / knn50 OOD scoring throughput on 100k ID embeddings"),
    ("diffusion", [], "EDM denoiser training and sampling images/s, planned cost of the paper config"),
    ("scale", ["--quick"], "every stage out of core on 200k x 384 float16, peak memory per stage"),
    ("workflow", [], "`make demo` from nothing, then the no-op rerun"),
    ("ledger_calibration", [], "the claims ledger's false-verdict rates and power on 1,000 simulated claims sweeps"),
    ("selection", [], "every label-free criterion's choice of K on 35 data sets of known K; the default, held out"),
    ("summary", [], "merging results/bench/*.json into summary.md"),
]
TARGET_SECONDS = 30 * 60


def main() -> None:
    started, durations = time.perf_counter(), []
    for number, (module, arguments, what) in enumerate(PARTS, start=1):
        command = " ".join([f"benchmarks.{module}", *arguments])
        print(f"\n[bench {number}/{len(PARTS)}] {command}: {what} "
              f"({time.strftime('%H:%M:%S')}, {time.perf_counter() - started:.0f} s in)", flush=True)
        part_started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *arguments])
        durations.append((module, time.perf_counter() - part_started))
        if result.returncode:
            raise SystemExit(f"benchmarks.{module} failed (exit status {result.returncode})")
        print(f"[bench {number}/{len(PARTS)}] done in {durations[-1][1]:.0f} s", flush=True)
    total = time.perf_counter() - started
    print("\nmake bench: " + ", ".join(f"{module} {seconds:.0f} s" for module, seconds in durations)
          + f"; total {total / 60:.1f} min (target < {TARGET_SECONDS // 60} min)")


if __name__ == "__main__":
    main()
