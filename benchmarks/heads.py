"""Clustering-head throughput: are the H heads one batched computation?

    .venv/bin/python -m benchmarks.heads [--quick]

- digits (overhead-bound): epoch time with H = 16 over H = 1, through the real Trainer path, at the demo's
  head size (128/64) and the paper's (512/256); target <= 3. Beside it, the floor of that ratio (the 15 added
  heads' FLOPs at the GEMM peak on top of one head's epoch) and the fraction of peak the added heads reach.
- N = 100k, d = 384 synthetic embeddings (FLOP-bound): TEMI training samples/s and the fraction of the fp32
  GEMM peak, counting student forward + backward (taken as 2x forward, the usual convention) and teacher
  forward, with the step compiled as the workflow runs a run of this size (target >= 70%), and eager beside it.
  Measured in rounds (an epoch of a few steps each, the GEMM peak right before it), each fraction within its
  round and the median reported: this machine drifts by tens of percent within minutes.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np


class _EpochTimer:
    """Seconds of every epoch; with `peaks`, the GEMM peak measured right before each epoch (untimed)."""

    def __init__(self, peaks: bool = False):
        import pytorch_lightning as pl

        from benchmarks.common import gemm_gflops

        timer = self

        class Callback(pl.Callback):
            def on_train_epoch_start(self, trainer, module):
                if peaks:
                    timer.peaks.append(gemm_gflops())
                timer.started = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                timer.epochs.append(time.perf_counter() - timer.started)

        self.epochs: list[float] = []
        self.peaks: list[float] = []
        self.callback = Callback()


def train_temi(x, neighbours, n_clusters, n_heads, batch_size, epochs, hidden_dim, bottleneck_dim,
               limit_batches=None, compiled=False, peaks=False) -> _EpochTimer:
    """Seconds per epoch (and with `peaks` the GEMM peak before each) of TEMI training through the same
    DataModule/LightningModule/Trainer the workflow uses; `compiled`: with the step compiled as one graph, as the
    workflow runs large CPU runs (the compilation falls in the first epoch)."""
    import pytorch_lightning as pl

    from lightning_modules.clustering.heads.data import EmbeddingPairsDataModule
    from lightning_modules.clustering.heads.temi import TEMI

    timer = _EpochTimer(peaks)
    module = TEMI(x.shape[1], n_clusters, n_heads=n_heads, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim,
                  batch_size=batch_size)
    if compiled:
        module.compile_step()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False, callbacks=[timer.callback],
                         limit_train_batches=limit_batches)
    trainer.fit(module, datamodule=EmbeddingPairsDataModule(x, neighbours, batch_size))
    return timer


def temi_step_flops(rows: int, dims: int, n_clusters: int, n_heads: int, hidden_dim: int, bottleneck_dim: int) -> float:
    """FLOPs of one step on `rows` anchors: 2*rows embeddings through student forward (1x) + backward (2x)
    and teacher forward (1x) = 4 forwards."""
    per_row_head = 2 * (dims * hidden_dim + hidden_dim * bottleneck_dim + bottleneck_dim * n_clusters)
    return 4 * (2 * rows) * n_heads * per_row_head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer epochs and steps (a smoke run)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from sklearn.datasets import load_digits

    from lightning_modules.search.neighbours import knn_graph

    from benchmarks.common import GEMM_NOTE, gemm_gflops, report, step

    peak = gemm_gflops()
    rows = [("gemm_gflops", peak, GEMM_NOTE)]

    digits = (load_digits().data / 16).astype(np.float32)
    digits_knn, _ = knn_graph(digits, 50)
    epochs, batch = (3 if args.quick else 6), 32
    for hidden, bottleneck in ((128, 64), (512, 256)):
        size_peak = gemm_gflops()  # beside this size's runs: the machine drifts
        per_epoch = {}
        for heads in (1, 16):
            step(f"TEMI on digits, {heads} head(s) of {hidden}x{bottleneck}, {epochs} epochs")
            times = train_temi(digits, digits_knn, 10, heads, batch, epochs, hidden, bottleneck).epochs
            per_epoch[heads] = float(np.median(times[1:]))  # the first epoch includes warm-up
        added_flops = (len(digits) // batch) * (temi_step_flops(batch, digits.shape[1], 10, 16, hidden, bottleneck)
                                               - temi_step_flops(batch, digits.shape[1], 10, 1, hidden, bottleneck))
        rows += [
            (f"digits_epoch_s_h1_{hidden}x{bottleneck}", per_epoch[1], "batch 32, K=10, median over epochs"),
            (f"digits_epoch_s_h16_{hidden}x{bottleneck}", per_epoch[16], ""),
            (f"temi_h16_over_h1_{hidden}x{bottleneck}", per_epoch[16] / per_epoch[1], "target <= 3"),
            (f"temi_h16_over_h1_floor_{hidden}x{bottleneck}", 1 + added_flops / (size_peak * 1e9) / per_epoch[1],
             f"the ratio if the 15 added heads' FLOPs ran at the GEMM peak ({size_peak:.0f} before these runs)"),
            (f"temi_added_heads_pct_peak_{hidden}x{bottleneck}",
             100 * added_flops / (per_epoch[16] - per_epoch[1]) / 1e9 / size_peak,
             "the 15 added heads' FLOPs / added time"),
        ]

    n, dims, n_clusters, heads, batch = 100_000, 384, 100, 16, 1024
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dims), dtype=np.float32)
    neighbours = rng.integers(0, n, (n, 10), dtype=np.int32)  # throughput does not depend on which neighbours
    steps, rounds = (4, 2) if args.quick else (8, 5)
    started = time.perf_counter()
    flops = temi_step_flops(batch, dims, n_clusters, heads, 512, 256) * steps
    # the workflow compiles the step of a run this large (estimator.COMPILE_MIN_LOSS_ENTRIES: a 100k-row run of 13
    # epochs or more); eager beside it. An epoch of `steps` steps per round, after a first one (warm-up, compilation)
    measured = {}
    for mode in ("compiled", "eager"):
        timer = train_temi(x, neighbours, n_clusters, heads, batch, rounds + 1, 512, 256, limit_batches=steps,
                           compiled=mode == "compiled", peaks=True)
        seconds, peaks = np.array(timer.epochs[1:]), np.array(timer.peaks[1:])
        measured[mode] = (seconds, 100 * flops / seconds / 1e9 / peaks, peaks)
    seconds, pct_peak, peaks = measured["compiled"]
    rows += [
        ("temi_100k_samples_per_s", float(np.median(steps * batch / seconds)),
         f"N={n}, d={dims}, K={n_clusters}, H={heads}, batch {batch}, the step compiled as the workflow runs it; "
         f"medians of {rounds} rounds of {steps} steps"),
        ("temi_gflops", float(np.median(flops / seconds / 1e9)), "student fwd+bwd (3x) + teacher fwd (1x)"),
        ("temi_pct_peak", float(np.median(pct_peak)),
         f"target >= 70; GEMM peak of each round {', '.join(f'{p:.0f}' for p in peaks)}; per round "
         + " ".join(f"{p:.1f}" for p in pct_peak)),
        ("temi_eager_pct_peak", float(np.median(measured["eager"][1])),
         "the same step eager (runs below the compile threshold); per round "
         + " ".join(f"{p:.1f}" for p in measured["eager"][1])),
        ("bench_seconds", time.perf_counter() - started, "the 100k part"),
    ]
    report("heads", rows)


if __name__ == "__main__":
    main()
