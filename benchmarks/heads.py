"""Clustering-head throughput: are the H heads one batched computation?

    .venv/bin/python -m benchmarks.heads [--quick]

- digits (overhead-bound): epoch time with H = 16 over H = 1, through the real Trainer path, at the demo's
  head size (128/64) and the paper's (512/256); target <= 3.
- N = 100k, d = 384 synthetic embeddings (FLOP-bound): TEMI training samples/s and the fraction of the fp32
  GEMM peak, counting student forward + backward (taken as 2x forward, the usual convention) and teacher
  forward, with the step compiled as the workflow runs a run of this size (target >= 70%), and eager beside it.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np


class _EpochTimer:
    def __init__(self):
        import pytorch_lightning as pl

        timer = self

        class Callback(pl.Callback):
            def on_train_epoch_start(self, trainer, module):
                timer.started = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                timer.epochs.append(time.perf_counter() - timer.started)

        self.epochs: list[float] = []
        self.callback = Callback()


def train_temi(x, neighbours, n_clusters, n_heads, batch_size, epochs, hidden_dim, bottleneck_dim,
               limit_batches=None, compiled=False) -> list[float]:
    """Seconds per epoch of TEMI training through the same DataModule/LightningModule/Trainer the workflow uses;
    `compiled`: with the step compiled as one graph, as the workflow runs large CPU runs (the compilation falls in
    the first epoch)."""
    import pytorch_lightning as pl

    from lightning_modules.clustering.heads.data import EmbeddingPairsDataModule
    from lightning_modules.clustering.heads.temi import TEMI

    timer = _EpochTimer()
    module = TEMI(x.shape[1], n_clusters, n_heads=n_heads, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim,
                  batch_size=batch_size)
    if compiled:
        module.compile_step()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False, callbacks=[timer.callback],
                         limit_train_batches=limit_batches)
    trainer.fit(module, datamodule=EmbeddingPairsDataModule(x, neighbours, batch_size))
    return timer.epochs


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
    epochs = 3 if args.quick else 6
    for hidden, bottleneck in ((128, 64), (512, 256)):
        per_epoch = {}
        for heads in (1, 16):
            step(f"TEMI on digits, {heads} head(s) of {hidden}x{bottleneck}, {epochs} epochs")
            times = train_temi(digits, digits_knn, 10, heads, 32, epochs, hidden, bottleneck)
            per_epoch[heads] = float(np.median(times[1:]))  # the first epoch includes warm-up
        rows += [
            (f"digits_epoch_s_h1_{hidden}x{bottleneck}", per_epoch[1], "batch 32, K=10, median over epochs"),
            (f"digits_epoch_s_h16_{hidden}x{bottleneck}", per_epoch[16], ""),
            (f"temi_h16_over_h1_{hidden}x{bottleneck}", per_epoch[16] / per_epoch[1], "target <= 3"),
        ]

    n, dims, n_clusters, heads, batch = 100_000, 384, 100, 16, 1024
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dims), dtype=np.float32)
    neighbours = rng.integers(0, n, (n, 10), dtype=np.int32)  # throughput does not depend on which neighbours
    steps = 6 if args.quick else 20
    started = time.perf_counter()
    flops = temi_step_flops(batch, dims, n_clusters, heads, 512, 256) * steps
    # the workflow compiles the step of a run this large (estimator.COMPILE_MIN_LOSS_ENTRIES: a 100k-row run of 13
    # epochs or more); eager beside it
    seconds = {mode: train_temi(x, neighbours, n_clusters, heads, batch, 2, 512, 256, limit_batches=steps,
                                compiled=mode == "compiled")[1]  # the second epoch: warmed up (and compiled)
               for mode in ("compiled", "eager")}
    rows += [
        ("temi_100k_samples_per_s", steps * batch / seconds["compiled"],
         f"N={n}, d={dims}, K={n_clusters}, H={heads}, batch {batch}, the step compiled as the workflow runs it"),
        ("temi_gflops", flops / seconds["compiled"] / 1e9, "student fwd+bwd (3x) + teacher fwd (1x)"),
        ("temi_pct_peak", 100 * flops / seconds["compiled"] / 1e9 / peak, "target >= 70"),
        ("temi_eager_pct_peak", 100 * flops / seconds["eager"] / 1e9 / peak,
         "the same step eager (runs below the compile threshold)"),
        ("bench_seconds", time.perf_counter() - started, "the 100k part"),
    ]
    report("heads", rows)


if __name__ == "__main__":
    main()
