"""Every stage at millions of embeddings, out of core, each in a fresh process with its peak RSS:

    .venv/bin/python -m benchmarks.scale [--quick] [--n N] [--dims D] [--data DIR]

Data: a mixture of 1,000 Gaussian components on the unit sphere, N x D float16 written by chunks to
`{data}/embeddings.npy` (N = 2,000,000 x 384 = 1.5 GB by default; --quick: 200,000), kept between runs.
Tables: results/bench/scale.json and scale-plan.json at the default N, scale-<N/1000>k*.json at another.
Stages, in this order (each one a new Python process, measured by its own peak RSS, /proc's VmHWM):

- `knn-graph`: the IVF kNN graph, k = 50, default nlist / nprobe from N (what `knn.index: ivf` builds).
- `search`: the same Q queries (10,000; --quick 2,000) against the exact index and the IVF index:
  throughput of each and IVF's recall@50 against exact, at the default nprobe and at 1/4, 1/2 and 2x it.
  The exact index is the reference, not a target.
- `kmeans`: K = 1,000, 10 Lloyd iterations from k-means++ on a 50,000-row sample, on the memory map.
- `temi`: 200 TEMI steps (--quick: 50), 16 heads, batch 1,024, K = 1,000, on the memory map and the graph, then the
  assignment pass over every row.
- `ood-knn1`: `knn1` fitted on the N rows (IVF index), 100,000 queries scored.
- `cluster-mahalanobis`: class means and pooled covariance with the k-means labels, 100,000 queries scored.

Targets (checked in the table): every stage's peak RSS <= 4 GiB and IVF recall@50 >= 0.95 at every size; IVF
at >= 20x the exact search's throughput and every stage at >= 50% of the GEMM peak of its arithmetic from
N = 1,000,000 on (SPEEDUP_TARGET_MIN_N, PEAK_PCT_TARGET say why not below); the whole 2M run within 30 minutes.
Then the planned times at ImageNet-1K (1.28M x 768, K = 1,000) and ImageNet-21K
(13M x 768, K = 10,000) on one H100-class GPU and a 64-core CPU node, from each stage's FLOPs at that size and
the fraction of this machine's GEMM peak the stage reached here: planned figures, not measurements.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

K_GRAPH = 50
KMEANS_K, KMEANS_ITERATIONS, KMEANS_INIT_SAMPLE = 1000, 10, 50_000
TEMI_STEPS, TEMI_HEADS, TEMI_BATCH = 200, 16, 1024
OOD_QUERIES = 100_000
RSS_TARGET_GIB = 4.0
RECALL_TARGET, SPEEDUP_TARGET = 0.95, 20.0
# The IVF speed-up target applies from this size on. Per query the IVF scans nprobe / nlist of the rows plus the
# nlist centroids (nlist = 4 sqrt(N)): the centroids cost 16 / nprobe of the scan, 1.2x at 200k (nprobe 13) and
# 0.36x at 2M (nprobe 44), so a smaller N cannot reach the same speed-up; the 200k smoke run checks memory and
# recall, and reports its speed-up beside this ideal.
SPEEDUP_TARGET_MIN_N = 1_000_000
# Each stage at >= 50% of the GEMM peak of its own arithmetic (float32; cluster-Mahalanobis float64, as the
# official fit) from the same size on: at 200k fixed costs (process start, imports, compilation, the IVF cells'
# training on a sample) are a large share of seconds-long stages.
PEAK_PCT_TARGET = 50.0
DEFAULT_N, QUICK_N = 2_000_000, 200_000
# The whole default run (the data written included) within half an hour on 2 cores.
WALL_TARGET_SECONDS = 1800.0
# Planned-figure assumptions (labelled as such in the output): fp32 peaks of the target machines.
TARGET_PEAKS_GFLOPS = {"H100-class GPU (67 TFLOP/s fp32)": 67_000.0,
                       "64-core CPU node (AVX-512, 2 FMA units, 2 GHz: 8.2 TFLOP/s fp32)": 64 * 2 * 16 * 2 * 2.0}
TARGET_SIZES = {"ImageNet-1K": (1_281_167, 768, 1000), "ImageNet-21K": (13_000_000, 768, 10_000)}


# ----- FLOP counts (multiply-adds x 2) of each stage at a size; the same formulas plan the larger sizes -----

def ivf_scan_fraction(n: int) -> tuple[int, int, float]:
    from lightning_modules.search.neighbours import ivf_settings

    nlist, nprobe = ivf_settings(n)
    return nlist, nprobe, nprobe / nlist


def ivf_fit_flops(n: int, dims: int) -> float:
    """Training the cells (k-means on TRAIN_POINTS_PER_CELL rows per cell) and assigning every row to one."""
    from lightning_modules.search.cell_search import TRAIN_ITERATIONS
    from lightning_modules.search.rows import TRAIN_POINTS_PER_CELL

    nlist, _, _ = ivf_scan_fraction(n)
    return 2 * min(n, TRAIN_POINTS_PER_CELL * nlist) * nlist * dims * TRAIN_ITERATIONS + 2 * n * nlist * dims


def knn_graph_flops(n: int, dims: int) -> float:
    """The cells, then every row compared with nprobe / nlist of the rows (cells of equal size)."""
    _, _, fraction = ivf_scan_fraction(n)
    return ivf_fit_flops(n, dims) + 2 * n * (fraction * n) * dims


def kmeans_flops(n: int, dims: int, k: int) -> float:
    seeding = 2 * min(n, KMEANS_INIT_SAMPLE) * k * dims * (2 + math.log(k))  # greedy k-means++ trials
    return 2 * n * k * dims * (KMEANS_ITERATIONS + 1) + seeding  # + the final top-2 pass


def temi_parameters(dims: int, k: int, heads: int = TEMI_HEADS, hidden: int = 512, bottleneck: int = 256) -> int:
    return heads * (dims * hidden + hidden + hidden * bottleneck + bottleneck + bottleneck * k + k)


def temi_flops(n: int, dims: int, k: int, steps: int) -> float:
    """Per step: student forward + backward on anchors and neighbours (6 P 2B), teacher forward (2 P 2B);
    then the selected head's forward over every row for the assignments."""
    parameters = temi_parameters(dims, k)
    return 16 * parameters * TEMI_BATCH * steps + 2 * parameters / TEMI_HEADS * n


def ood_knn_flops(n: int, dims: int, queries: int) -> float:
    """The cells; per query its nprobe nearest cells, then nprobe / nlist of the rows."""
    nlist, _, fraction = ivf_scan_fraction(n)
    return ivf_fit_flops(n, dims) + 2 * queries * nlist * dims + 2 * queries * fraction * n * dims


def mahalanobis_flops(n: int, dims: int, k: int, queries: int) -> float:
    return 2 * n * dims * dims + 2 * queries * dims * (dims + k)


# ----- data -----

def write_mixture(path: Path, n: int, dims: int, components: int = 1000, spread: float = 0.05, seed: int = 0,
                  chunk_rows: int = 262_144) -> None:
    """float16 points around `components` random unit centres, written chunk by chunk (never whole in RAM)."""
    from lightning_modules.core.io import atomic_path
    from lightning_modules.search.rows import l2_normalise

    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((components, dims), dtype=np.float32))
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, dims))
        for start in range(0, n, chunk_rows):
            rows = min(chunk_rows, n - start)
            noise = spread * rng.standard_normal((rows, dims), dtype=np.float32)
            out[start:start + rows] = centres[rng.integers(0, components, rows)] + noise
        out.flush()
        del out


def query_rows(n: int, count: int) -> np.ndarray:
    return np.linspace(0, n - 1, min(count, n)).astype(np.int64)


# ----- stages (each runs in its own process: `--stage NAME`) -----

def stage_knn_graph(x, data: Path) -> dict:
    from lightning_modules.core.io import save_npy
    from lightning_modules.search.neighbours import build_index, graph_of_index

    index = build_index(x, "ivf", use_gpu=False)
    indices, _ = graph_of_index(index, x, K_GRAPH)
    save_npy(data / f"graph.k{K_GRAPH}.npy", indices)
    return {"flops": index.flops_, "ideal_flops": knn_graph_flops(*x.shape), "nlist": index.nlist,
            "nprobe": index.nprobe, "phases": index.seconds_}


def stage_search(x, data: Path, queries: int) -> dict:
    """Exact against IVF on the same queries: the default nprobe and a sweep around it (recall / speed curve)."""
    from lightning_modules.core.io import gather_rows
    from lightning_modules.search.neighbours import build_index, search

    rows = query_rows(len(x), queries)
    exact = build_index(x, "exact", use_gpu=False)
    started = time.perf_counter()
    queries = gather_rows(x, rows)
    _, exact_found = search(exact, queries, K_GRAPH)
    exact_seconds = time.perf_counter() - started
    del exact
    ivf = build_index(x, "ivf", use_gpu=False)
    default_nprobe, record = ivf.nprobe, {}
    for factor in (0.25, 0.5, 1, 2):
        ivf.nprobe = max(1, int(default_nprobe * factor))
        started = time.perf_counter()
        _, ivf_found = search(ivf, queries, K_GRAPH)
        seconds = time.perf_counter() - started
        recall = float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(exact_found, ivf_found)]) / K_GRAPH)
        record[f"nprobe{ivf.nprobe}"] = {"recall": recall, "speedup": exact_seconds / seconds}
        if factor == 1:
            record.update(recall=recall, speedup=exact_seconds / seconds, ivf_qps=len(rows) / seconds)
    return {**record, "flops": 2.0 * len(rows) * len(x) * x.shape[1], "queries": len(rows),
            "exact_qps": len(rows) / exact_seconds, "timed_seconds": exact_seconds, "nprobe": default_nprobe}


def stage_kmeans(x, data: Path) -> dict:
    from lightning_modules.clustering.kmeans import LloydKMeans
    from lightning_modules.core.io import save_npy

    model = LloydKMeans(KMEANS_K, seed=0, max_iter=KMEANS_ITERATIONS, tol=0.0, init_sample=KMEANS_INIT_SAMPLE,
                        use_gpu=False).fit(x)
    save_npy(data / "kmeans_labels.npy", model.labels_)
    return {"flops": kmeans_flops(*x.shape, KMEANS_K), "inertia_per_row": model.inertia_ / len(x)}


def stage_temi(x, data: Path, steps: int) -> dict:
    from lightning_modules.clustering.heads.estimator import TEMIClustering
    from lightning_modules.core.io import load_npy

    graph = load_npy(data / f"graph.k{K_GRAPH}.npy")
    model = TEMIClustering(KMEANS_K, seed=0, epochs=1, batch_size=TEMI_BATCH, lr=1e-4, progress=False,
                           max_steps=steps, n_heads=TEMI_HEADS).fit(x, neighbours=graph)
    return {"flops": temi_flops(*x.shape, KMEANS_K, steps), "steps": steps,
            "clusters_used": int(len(np.unique(model.labels_))), "phases": model.seconds_}


def stage_ood_knn1(x, data: Path) -> dict:
    from lightning_modules.core.io import gather_rows
    from lightning_modules.ood.knn import KNNScorer

    scorer = KNNScorer(k=1, index="ivf", use_gpu=False).fit(x)
    scores = scorer.score(gather_rows(x, query_rows(len(x), OOD_QUERIES)))
    return {"flops": scorer.index_.flops_, "ideal_flops": ood_knn_flops(*x.shape, len(scores)),
            "queries": len(scores), "phases": scorer.index_.seconds_}


def stage_cluster_mahalanobis(x, data: Path) -> dict:
    from lightning_modules.core.io import gather_rows, load_npy
    from lightning_modules.ood.mahalanobis import Mahalanobis

    started = time.perf_counter()
    scorer = Mahalanobis().fit(x, load_npy(data / "kmeans_labels.npy"))
    fitted = time.perf_counter()
    scores = scorer.score(gather_rows(x, query_rows(len(x), OOD_QUERIES)))
    # float64 by design (the official fit: sklearn's EmpiricalCovariance, np.cov in float64)
    return {"flops": mahalanobis_flops(*x.shape, KMEANS_K, len(scores)), "queries": len(scores),
            "arithmetic": "float64", "phases": {"fit": fitted - started, "score": time.perf_counter() - fitted}}


STAGES = {"knn-graph": stage_knn_graph, "search": stage_search, "kmeans": stage_kmeans, "temi": stage_temi,
          "ood-knn1": stage_ood_knn1, "cluster-mahalanobis": stage_cluster_mahalanobis}


def run_stage(name: str, data: Path, queries: int, temi_steps: int) -> None:
    """In the child: run one stage on the memory map, print its record as one JSON line."""
    from benchmarks.common import gemm_gflops, peak_rss_mib
    from lightning_modules.core.io import load_npy

    x = load_npy(data / "embeddings.npy")  # memory-mapped float16
    extra = {"search": (queries,), "temi": (temi_steps,)}.get(name, ())
    started = time.perf_counter()
    record = STAGES[name](x, data, *extra)
    record["seconds"] = time.perf_counter() - started
    record["peak_rss_gib"] = peak_rss_mib() / 1024
    # the denominator of this stage's %, measured right after it: these machines' peak drifts within an hour
    record["gemm_peak_gflops"] = gemm_gflops()
    if record.get("arithmetic", "float32") != "float32":
        record[f"gemm_peak_{record['arithmetic']}_gflops"] = gemm_gflops(dtype=record["arithmetic"])
    print("STAGE " + json.dumps(record), flush=True)


def in_fresh_process(name: str, data: Path, queries: int, temi_steps: int, reuse: bool = False) -> dict:
    """One stage's record; every record is kept in `{data}/stage-<name>.json`, and `--reuse` takes a kept one
    instead of running the stage again (a benchmark stopped half-way goes on where it stopped)."""
    kept = data / f"stage-{name}.json"
    if reuse and kept.exists():
        record = json.loads(kept.read_text())
        print(f"  {name}: kept record ({record['seconds']:.1f} s, peak RSS {record['peak_rss_gib']:.2f} GiB)")
        return record
    print(f"  {name}: running in a fresh process ...", flush=True)
    child = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--stage", name, "--data", str(data),
                            "--queries", str(queries), "--temi-steps", str(temi_steps)], capture_output=True, text=True)
    if child.returncode:
        raise SystemExit(f"stage {name} failed (exit status {child.returncode}); its last lines:\n"
                         + "\n".join(child.stderr.splitlines()[-15:]))
    output = child.stdout
    record = json.loads(next(line for line in output.splitlines() if line.startswith("STAGE "))[6:])
    print(f"  {name}: {record['seconds']:.1f} s, peak RSS {record['peak_rss_gib']:.2f} GiB", flush=True)
    kept.write_text(json.dumps(record, indent=1) + "\n")
    return record


# ----- the table and the plan -----

def planned_flops(stage: str, n: int, dims: int, k: int) -> float:
    """Each stage's FLOPs at (n, dims, k): one pass of the stage as run here (TEMI: one epoch, N / batch steps)."""
    return {"knn-graph": lambda: knn_graph_flops(n, dims),
            "kmeans": lambda: kmeans_flops(n, dims, k),
            "temi": lambda: temi_flops(n, dims, k, max(1, n // TEMI_BATCH)),
            "ood-knn1": lambda: ood_knn_flops(n, dims, OOD_QUERIES),
            "cluster-mahalanobis": lambda: mahalanobis_flops(n, dims, k, OOD_QUERIES)}[stage]()


def pct_of_peak(record: dict, peak: float, arithmetic: str = "float32") -> float:
    """The stage's % of the `arithmetic` GEMM peak measured after it (records without an fp32 one: this run's)."""
    own_peak = record.get("gemm_peak_gflops", peak) if arithmetic == "float32" else \
        record[f"gemm_peak_{arithmetic}_gflops"]
    return 100 * record["flops"] / record.get("timed_seconds", record["seconds"]) / 1e9 / own_peak


def stage_rows(name: str, record: dict, peak: float) -> list[tuple[str, float, str]]:
    """One stage's rows of the table: time, peak RSS, % of the GEMM peak (also of the float64 peak for a
    stage whose arithmetic is float64 by design), the phases."""
    rows = [(f"{name}_seconds", record["seconds"], "wall, fresh process, loading included"),
            (f"{name}_peak_rss_gib", record["peak_rss_gib"],
             f"target <= {RSS_TARGET_GIB}" + (" (reference, not a target)" if name == "search" else "")),
            (f"{name}_pct_peak", pct_of_peak(record, peak),
             "% of the GEMM peak measured after the stage (records without one: this run's)")]
    arithmetic = record.get("arithmetic", "float32")
    if arithmetic != "float32":
        rows.append((f"{name}_pct_{arithmetic}_peak", pct_of_peak(record, peak, arithmetic),
                     f"% of the {arithmetic} GEMM peak: this stage's arithmetic by design"))
    return rows + [(f"{name}_{phase}_seconds", phase_seconds, "of which")
                   for phase, phase_seconds in record.get("phases", {}).items() if phase_seconds]


def main() -> None:
    from benchmarks.common import GEMM_NOTE, gemm_gflops, report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="N = 200,000, 2,000 search queries, 50 TEMI steps (a smoke run of every stage)")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--data", type=Path, default=Path("results/bench/scale-data"))
    parser.add_argument("--temi-steps", type=int, default=None)
    parser.add_argument("--reuse", action="store_true", help="take the kept record of stages measured before")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    queries = args.queries or (2_000 if args.quick else 10_000)
    temi_steps = args.temi_steps or (50 if args.quick else TEMI_STEPS)
    if args.stage:
        return run_stage(args.stage, args.data, queries, temi_steps)

    started = time.perf_counter()
    n = args.n or (QUICK_N if args.quick else DEFAULT_N)
    table = "scale" if n == DEFAULT_N else f"scale-{n // 1000}k"  # the smoke run keeps the 2M tables
    data = args.data / f"n{n}-d{args.dims}"
    data.mkdir(parents=True, exist_ok=True)
    print(f"scale benchmark: N = {n:,} x {args.dims} float16 ({n * args.dims * 2 / 2**30:.2f} GiB on disk), "
          f"each stage in a fresh process", flush=True)
    if not (data / "embeddings.npy").exists():
        print("  writing the synthetic mixture ...", flush=True)
        write_mixture(data / "embeddings.npy", n, args.dims)
    peak = gemm_gflops()
    records = {name: in_fresh_process(name, data, queries, temi_steps, args.reuse) for name in STAGES}

    rows = [("gemm_peak_gflops", peak, GEMM_NOTE), ("n", n, "rows"), ("dims", args.dims, "")]
    for name, record in records.items():
        rows += stage_rows(name, record, peak)
    search = records["search"]
    at_scale = n >= SPEEDUP_TARGET_MIN_N  # the speed-up and % of peak targets apply
    nlist, nprobe, scanned = ivf_scan_fraction(n)
    rows += [("ivf_recall_at_50", search["recall"], f"target >= {RECALL_TARGET}, {search['queries']} queries"),
             ("ivf_speedup_vs_exact", search["speedup"], f"target >= {SPEEDUP_TARGET}" if at_scale else
              f"no target below N = {SPEEDUP_TARGET_MIN_N:,} (scale.py SPEEDUP_TARGET_MIN_N)"),
             ("ivf_ideal_speedup", 1 / (scanned + nlist / n), "rows / (rows scanned + centroids), per query"),
             ("exact_queries_per_s", search["exact_qps"], ""), ("ivf_queries_per_s", search["ivf_qps"], ""),
             *[(f"ivf_{key}_recall", value["recall"], f"speed-up {value['speedup']:.1f}x")
               for key, value in search.items() if key.startswith("nprobe") and isinstance(value, dict)],
             ("knn_graph_nlist", records["knn-graph"]["nlist"], ""),
             ("knn_graph_nprobe", records["knn-graph"]["nprobe"], "")]
    over = [name for name, r in records.items() if name != "search" and r["peak_rss_gib"] > RSS_TARGET_GIB]
    slow = [name for name, r in records.items() if name != "search" and at_scale
            and pct_of_peak(r, peak, r.get("arithmetic", "float32")) < PEAK_PCT_TARGET]
    wall = time.perf_counter() - started
    wall_applies = n >= DEFAULT_N and not args.reuse
    rows.append(("wall_seconds", wall, (f"target <= {WALL_TARGET_SECONDS:.0f}" if wall_applies else "no target")
                 + (", stages kept from earlier runs not in it" if args.reuse else "")))
    rows.append(("targets_met", float(not over and not slow and search["recall"] >= RECALL_TARGET
                                      and (search["speedup"] >= SPEEDUP_TARGET or not at_scale)
                                      and (wall <= WALL_TARGET_SECONDS or not wall_applies)),
                 "1 = all targets of this size met" + ("" if at_scale else " (RSS and recall)")))
    report(table, rows)
    for what, names in (("over the RSS target", over),
                        (f"below {PEAK_PCT_TARGET:.0f}% of their arithmetic's peak", slow)):
        if names:
            print(f"  {what}: {', '.join(names)}")

    print("\nPlanned times (NOT measurements): FLOPs at the target size / (the fraction of peak reached here x the "
          "target's fp32 peak); TEMI: one epoch")
    plan = []
    for dataset, (target_n, target_dims, target_k) in TARGET_SIZES.items():
        for machine, machine_peak in TARGET_PEAKS_GFLOPS.items():
            for name, record in records.items():
                if name == "search":
                    continue
                fraction = pct_of_peak(record, peak) / 100  # the target machines' peaks are fp32
                hours = planned_flops(name, target_n, target_dims, target_k) / (fraction * machine_peak * 1e9) / 3600
                # the machine in the name: one JSON key per (dataset, stage, machine)
                plan.append((f"{dataset} {name} hours on {machine.split(' (')[0]}", hours, f"planned, {machine}"))
    report(f"{table}-plan", plan)


if __name__ == "__main__":
    main()
