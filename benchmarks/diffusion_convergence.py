"""When does the demo's diffusion model stop improving? FD (in the classifier's features, the sweep's own metric)
of the samples of one configuration trained for a growing number of steps, with the real-vs-real floor beside
it: the training length of `config/claims.yaml` is read off this table (the first length whose FD is within
the seed-to-seed spread of the longest).

    .venv/bin/python -m benchmarks.diffusion_convergence [--config config/claims.yaml] [--steps 1000 2000 ...]

Each length is its own run from scratch (as a sweep would train it), two at a time on two cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.common import GEMM_NOTE, gemm_gflops, report, step


def _settings(config_path: str) -> tuple[dict, dict, dict]:
    import yaml

    from lightning_modules.workflow.config import validate_config
    from lightning_modules.diffusion import classifier_settings, run_settings
    from lightning_modules.diffusion import diffusion_backbone

    config = validate_config(yaml.safe_load(Path(config_path).read_text()), "config/schema.yaml")
    diffusion = config["diffusion"]
    dataset = config["datasets"][diffusion["datasets"][0]]
    return dataset, {**run_settings(diffusion), "classifier": classifier_settings(diffusion)}, diffusion_backbone(config)


def _train(job: tuple) -> dict:
    import torch

    from lightning_modules.data import dataset_options, load_dataset
    from lightning_modules.diffusion.run import train_diffusion
    from lightning_modules.diffusion.scoring import feature_networks

    torch.set_num_threads(1)
    dataset, params, backbone, classifier_dir, steps, seed, condition, out_dir = job
    data = load_dataset(dataset["source"], dataset["split"], dataset_options(dataset))
    networks = feature_networks({**params["metrics"], "networks": ["classifier"]}, backbone, classifier_dir)
    return train_diffusion(data, condition, out_dir, {**params, "train_steps": steps}, networks, seed=seed,
                           progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/claims.yaml")
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 16000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--condition", default="none")
    args = parser.parse_args()
    from lightning_modules.diffusion.run import train_feature_classifier

    dataset, params, backbone = _settings(args.config)
    peak = gemm_gflops()
    rows = [("gemm_peak_gflops", peak, GEMM_NOTE)]
    with tempfile.TemporaryDirectory() as scratch:
        step("training the classifier feature network")
        train_feature_classifier(dataset, Path(scratch) / "classifier", params["classifier"])
        jobs = [(dataset, params, backbone, Path(scratch) / "classifier", steps, seed, args.condition,
                 Path(scratch) / f"{steps}-{seed}") for steps in args.steps for seed in args.seeds]
        step(f"{len(jobs)} diffusion runs ({args.condition}; steps {args.steps} x seeds {args.seeds}), two at a time")
        started = time.perf_counter()
        with ProcessPoolExecutor(2) as pool:
            records = list(pool.map(_train, jobs))
        step(f"done in {time.perf_counter() - started:.0f} s")
    for steps in args.steps:
        mine = [record for record in records if record["train_steps"] == steps]
        fd = [record["fd_classifier"] for record in mine]
        rows += [(f"fd_classifier_{steps}_steps", sum(fd) / len(fd),
                  f"seeds {', '.join(f'{value:.3g}' for value in fd)}; floor {mine[0]['fd_floor_classifier']:.3g}"),
                 (f"train_seconds_{steps}_steps", sum(r["train_seconds"] for r in mine) / len(mine),
                  "one core per run")]
    report("diffusion_convergence", rows)


if __name__ == "__main__":
    main()
