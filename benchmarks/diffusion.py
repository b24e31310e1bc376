"""EDM denoiser cost: training and sampling images/s per denoiser on this machine, FLOPs per image counted by
torch's FlopCounterMode, and from them the *planned* cost of the paper config (EDM's CIFAR-10 recipe) on one
and on eight H100-class GPUs.

    .venv/bin/python -m benchmarks.diffusion [--quick]

Rows: the demo's MLP on 8x8 digits (batch 128) and paper.yaml's DDPM++-like UNet on 32x32x3 (a small batch:
this is a CPU). Training = EDM's loss forward + backward + fused Adam + the EMA update, in a plain loop (the
Lightning loop adds ~2 ms per step on top, which matters only for the tiny MLP). Sampling = EDM's Heun
sampler, 18 steps = 35 network evaluations per image. The GPU plan assumes a model-FLOP utilisation (MFU)
stated in the table; it is arithmetic, not a measurement.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import GEMM_NOTE, gemm_gflops, report

H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM datasheet, dense bf16
ASSUMED_MFU = 0.35              # a typical utilisation of conv UNets at 32x32 under bf16 autocast (assumed)
ASSUMED_DDP_EFFICIENCY = 0.9    # 8 GPUs on one node with NVLink (assumed)
PAPER_IMAGES = 200e6            # EDM's CIFAR-10 duration: 200 Mimg
PAPER_SAMPLES = 50_000
PAPER_EVALUATIONS = 35

DENOISERS = {
    "mlp-digits": ({"name": "mlp", "hidden": 128, "blocks": 2}, (1, 8, 8), 10, 128),
    "ddpmpp-cifar": ({"name": "ddpmpp", "channels": [256, 256, 256], "layers_per_block": 4,
                      "attention_resolutions": [16], "dropout": 0.13}, (3, 32, 32), 10, 4),
}


def forward_flops(model, shape, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(batch, *shape)
    labels = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.denoiser(x, torch.full((batch,), 1.0), labels)
    return counter.get_total_flops() / batch


def measure(name: str, network: dict, shape, n_classes: int, batch: int, steps: int) -> dict:
    from lightning_modules.diffusion.edm import EDMSettings, edm_loss, guided, heun_sample
    from lightning_modules.diffusion.model import EDMDenoiser

    torch.manual_seed(0)
    model = EDMDenoiser(shape, network, n_classes=n_classes)
    optimizer = model.configure_optimizers()
    images, labels = torch.randn(batch, *shape), torch.randint(0, n_classes, (batch,))
    generator = torch.Generator().manual_seed(0)

    def train_step():
        loss = edm_loss(model.denoiser, images, labels, model.settings, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.update_ema(batch)

    train_step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        train_step()
    train_seconds = (time.perf_counter() - started) / steps
    settings = EDMSettings(steps=18)
    model.ema.eval()
    denoise = guided(model.ema, labels, n_classes, 0.0)
    heun_sample(denoise, torch.randn(batch, *shape), EDMSettings(steps=1))  # warm-up
    started = time.perf_counter()
    heun_sample(denoise, torch.randn(batch, *shape), settings)
    sample_seconds = time.perf_counter() - started
    return {"name": name, "flops": forward_flops(model, shape, min(batch, 4)),
            "params": sum(p.numel() for p in model.denoiser.parameters()),
            "train_images_per_s": batch / train_seconds, "sample_images_per_s": batch / sample_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    args = parser.parse_args()
    torch.set_num_threads(2)
    peak = gemm_gflops()
    rows = [("fp32 GEMM peak (GFLOP/s)", peak, GEMM_NOTE)]
    for name, (network, shape, n_classes, batch) in DENOISERS.items():
        steps = (3 if args.quick else 10) if name.startswith("ddpmpp") else (50 if args.quick else 300)
        result = measure(name, network, shape, n_classes, batch, steps)
        train_flops = 3 * result["flops"]  # forward + backward (2x forward)
        rows += [
            (f"{name}: parameters (M)", result["params"] / 1e6, ""),
            (f"{name}: forward GFLOP / image", result["flops"] / 1e9, "FlopCounterMode"),
            (f"{name}: train images/s", result["train_images_per_s"], f"batch {batch}, 2 threads"),
            (f"{name}: train fraction of GEMM peak", result["train_images_per_s"] * train_flops / 1e9 / peak, ""),
            (f"{name}: sample images/s (35 evaluations)", result["sample_images_per_s"], f"batch {batch}"),
        ]
        if name.startswith("ddpmpp"):
            sustained = H100_BF16_DENSE_TFLOPS * 1e12 * ASSUMED_MFU
            train_hours = PAPER_IMAGES * train_flops / sustained / 3600
            sample_hours = PAPER_SAMPLES * PAPER_EVALUATIONS * result["flops"] / sustained / 3600
            note = f"PLANNED: {H100_BF16_DENSE_TFLOPS:.0f} TFLOP/s bf16 x MFU {ASSUMED_MFU}"
            rows += [
                (f"{name}: paper training, 1 H100 (h)", train_hours, note),
                (f"{name}: paper training, 8 H100 DDP (h)", train_hours / (8 * ASSUMED_DDP_EFFICIENCY),
                 f"PLANNED: x8 at {ASSUMED_DDP_EFFICIENCY} scaling"),
                (f"{name}: 50k samples for FID, 1 H100 (h)", sample_hours, note),
            ]
    report("diffusion", rows)


if __name__ == "__main__":
    main()
