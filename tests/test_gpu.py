"""GPU checks (`make test-gpu`, marker `gpu`): where a CUDA GPU and faiss-gpu exist, the GPU paths against their
CPU references, each checking that CUDA did the work. Without them every test skips with the reason (CI has no GPU:
these are the only tests that may skip there)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu


def _faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
needs_faiss_gpu = pytest.mark.skipif(_faiss_gpus() == 0, reason="faiss sees no GPU (faiss-cpu, or no GPU)")


def clustered(n=20000, dims=64, components=50, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(components, dims))
    return (centres[rng.integers(0, components, n)] + 0.3 * rng.normal(size=(n, dims))).astype(np.float32)


@needs_faiss_gpu
def test_sharded_float16_search_recalls_cpu_exact_search():
    from lightning_modules.search.neighbours import knn_graph

    x = clustered()
    on_gpu, _ = knn_graph(x, 20, use_gpu=True)
    on_cpu, _ = knn_graph(x, 20, use_gpu=False)
    recall = np.mean([len(np.intersect1d(a, b)) for a, b in zip(on_gpu, on_cpu)]) / 20
    assert recall >= 0.99


@needs_faiss_gpu
def test_gpu_kmeans_matches_the_cpu_lloyd_loop_from_the_same_start():
    from lightning_modules.clustering.kmeans import LloydKMeans

    x = clustered()
    start = x[np.random.default_rng(0).choice(len(x), 50, replace=False)]
    on_gpu = LloydKMeans(50, max_iter=20, tol=0, use_gpu=True).fit(x, init_centroids=start)
    on_cpu = LloydKMeans(50, max_iter=20, tol=0, use_gpu=False).fit(x, init_centroids=start)
    assert on_gpu.inertia_ == pytest.approx(on_cpu.inertia_, rel=1e-3)


def cuda_used(work) -> int:
    """Run `work()`; the most bytes CUDA held meanwhile (0: it ran on the CPU)."""
    torch.cuda.reset_peak_memory_stats()
    work()
    return torch.cuda.max_memory_allocated()


def without_gpu(function: str, *paths) -> None:
    """Call this file's `function(*paths)` in a process that sees no GPU: the same code's CPU result."""
    call = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_gpu; "
            f"test_gpu.{function}(*{[str(p) for p in paths]!r})")
    subprocess.run([sys.executable, "-c", call], env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, check=True,
                   timeout=600)


def fit_one_head_epoch(rows_path, probs_path) -> None:
    from lightning_modules.clustering.heads.estimator import TEMIClustering
    from lightning_modules.search.neighbours import knn_graph

    x = np.load(rows_path)
    neighbours, _ = knn_graph(x, 10, use_gpu=False)
    model = TEMIClustering(50, epochs=1, batch_size=256, n_heads=4, progress=False).fit(x, neighbours)
    np.save(probs_path, model.probs_)


@needs_cuda
def test_one_head_epoch_on_the_gpu_matches_the_cpu(tmp_path):
    np.save(tmp_path / "rows.npy", clustered(n=4000))
    assert cuda_used(lambda: fit_one_head_epoch(tmp_path / "rows.npy", tmp_path / "gpu.npy")) > 0
    without_gpu("fit_one_head_epoch", tmp_path / "rows.npy", tmp_path / "cpu.npy")
    on_gpu, on_cpu = np.load(tmp_path / "gpu.npy"), np.load(tmp_path / "cpu.npy")
    assert on_gpu.shape == (4000, 50) and np.isfinite(on_gpu).all()
    # same seed, same batches: only float rounding differs between the devices
    assert np.mean(on_gpu.argmax(1) == on_cpu.argmax(1)) >= 0.95 and np.abs(on_gpu - on_cpu).max() < 0.05


@needs_cuda
def test_embedding_extraction_under_autocast_matches_float32():
    from lightning_modules.backbones import build_backbone
    from lightning_modules.embeddings.extract import embed_images

    torch.manual_seed(0)
    model, transform = build_backbone("timm/vit_tiny_patch16_224", pretrained=False)
    images = np.random.default_rng(0).random((16, 3, 32, 32), dtype=np.float32)
    embedded = {}
    assert cuda_used(lambda: embedded.update(mixed=embed_images(model, transform, images, batch_size=8,
                                                                progress=False))) > 0
    mixed = embedded["mixed"]
    with torch.no_grad():
        reference = torch.cat([model.float().cpu()(torch.stack([transform(torch.from_numpy(i)) for i in images[s:s + 8]]))
                               for s in (0, 8)]).numpy()
    cosine = (mixed * reference).sum(1) / (np.linalg.norm(mixed, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() > 0.99


@needs_cuda
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_edm_trains_samples_and_resumes_on_the_gpu(tmp_path, monkeypatch, digits_pixels, precision):
    """The diffusion job's path on a GPU, at both precisions: training, EMA, Heun sampling and the scores; a run
    killed after step 12 resumes from its step-8 checkpoint and ends with the uninterrupted run's samples."""
    from lightning_modules.data import DatasetSplit
    from lightning_modules.diffusion.model import EDMDenoiser
    from lightning_modules.diffusion.run import train_diffusion
    from lightning_modules.diffusion.scoring import feature_networks

    x, y = digits_pixels
    data = DatasetSplit(x[:256].reshape(-1, 1, 8, 8), y[:256], [str(d) for d in range(10)])
    params = {"image_size": None, "fit": "pad", "network": {"name": "mlp", "hidden": 64, "blocks": 1},
              "edm": {"steps": 4}, "lr": 1e-3, "lr_rampup_kimg": 0, "ema_halflife_kimg": 0.5, "ema_rampup_ratio": 0.05,
              "p_uncond": 0.1, "batch_size": 32, "train_steps": 16, "checkpoint_every": 8, "devices": 1,
              "strategy": "auto", "precision": precision, "n_samples": 64, "guidance": 0.5,
              "sample_labels": "empirical", "metrics": {"networks": ["backbone"], "kid_subsets": 10, "kid_subset_size": 16}}
    networks = feature_networks(params["metrics"], {"spec": "pixels"}, device="cuda")
    records = {}
    assert cuda_used(lambda: records.update(whole=train_diffusion(data, "class", tmp_path / "whole", params, networks,
                                                                  progress=False))) > 0
    assert records["whole"]["train_steps"] == 16 and np.isfinite(records["whole"]["fd_backbone"])
    assert np.load(tmp_path / "whole" / "samples.npy").shape == (64, 1, 8, 8)

    original = EDMDenoiser.training_step

    def killed_after_step_12(self, batch, batch_idx):
        if self.global_step == 12:
            raise RuntimeError("killed")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(EDMDenoiser, "training_step", killed_after_step_12)
    with pytest.raises(RuntimeError, match="killed"):
        train_diffusion(data, "class", tmp_path / "resumed", params, networks, progress=False)
    assert torch.load(tmp_path / "resumed" / ".checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8
    monkeypatch.setattr(EDMDenoiser, "training_step", original)
    resumed = train_diffusion(data, "class", tmp_path / "resumed", params, networks, progress=False)
    assert resumed["train_steps"] == 16
    np.testing.assert_allclose(np.load(tmp_path / "resumed" / "samples.npy"),
                               np.load(tmp_path / "whole" / "samples.npy"), atol=1e-3)
