"""Cluster-conditioned diffusion: the generation metrics against formulas and scipy, the denoiser, its
checkpoint resumption, and the conditioning checks."""

import numpy as np
import pytest
import scipy.linalg
import torch

from lightning_modules.metrics.generation import frechet_distance, kernel_inception_distance


def fd_formula(a, b):
    """The Fréchet distance of the Gaussians fitted to two samples, with scipy's matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real))


def test_frechet_distance_of_hand_worked_gaussians():
    rng = np.random.default_rng(0)
    standard = rng.standard_normal((40_000, 2))
    # N(0, I) vs N((1, 0), I): ||mu||^2 = 1, covariances equal -> 1
    assert frechet_distance(standard, rng.standard_normal((40_000, 2)) + [1, 0]) == pytest.approx(1, abs=0.05)
    # N(0, I) vs N(0, diag(4, 1)): Tr(I + diag(4, 1) - 2 diag(2, 1)) = 1
    assert frechet_distance(standard, rng.standard_normal((40_000, 2)) * [2, 1]) == pytest.approx(1, abs=0.05)
    assert frechet_distance(standard, standard) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_matches_the_formula_with_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(fd_formula(a, b), rel=1e-5)


def test_kid_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((60, 4)), rng.standard_normal((60, 4)) + 0.3
    kernel = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731 - the cubic kernel of KID
    m = len(x)
    off_diagonal = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))  # noqa: E731
    expected = off_diagonal(kernel(x, x)) + off_diagonal(kernel(y, y)) - 2 * kernel(x, y).mean()
    mean, std = kernel_inception_distance(x, y, subsets=1, subset_size=m)  # one subset: all of both sets
    assert mean == pytest.approx(expected, rel=1e-6) and std == 0


def test_kid_is_unbiased_so_it_goes_negative_between_samples_of_one_distribution():
    rng = np.random.default_rng(3)
    same = [kernel_inception_distance(rng.standard_normal((100, 3)), rng.standard_normal((100, 3)), subsets=1,
                                      subset_size=100)[0] for _ in range(30)]
    assert min(same) < 0 < max(same) and abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    different = kernel_inception_distance(rng.standard_normal((100, 3)), rng.standard_normal((100, 3)) + 1)[0]
    assert different > max(same)


def test_image_size_must_survive_the_unet_downsampling():
    from lightning_modules.diffusion import check_image_size

    check_image_size(16, 3)
    with pytest.raises(ValueError, match=r"image_size = 18 cannot be downsampled 2 times.*multiple of 4"):
        check_image_size(18, 3)


def test_digits_are_padded_or_resized_to_the_model_size(digits_pixels):
    from lightning_modules.diffusion.run import prepare_images

    images = digits_pixels[0][:5].reshape(-1, 1, 8, 8)
    padded = prepare_images(images, 16)
    assert padded.shape == (5, 1, 16, 16) and np.array_equal(padded[:, :, 4:12, 4:12], images)
    assert padded[:, :, :4].sum() == 0
    resized = prepare_images(images, 16, "resize")
    assert resized.shape == (5, 1, 16, 16) and 0 <= resized.min() and resized.max() <= 1
    with pytest.raises(ValueError, match="smaller than the images"):
        prepare_images(images, 4)


def test_sampling_labels_follow_the_cluster_frequencies():
    from lightning_modules.diffusion.run import sample_labels

    labels = np.repeat([0, 1, 2], [700, 200, 100])
    drawn = sample_labels(labels, 3, 20_000, seed=0)
    np.testing.assert_allclose(np.bincount(drawn) / len(drawn), [0.7, 0.2, 0.1], atol=0.01)
    assert set(sample_labels(labels, 5, 1000, "uniform")) == {0, 1, 2, 3, 4}


TINY = {"image_size": 8, "block_out_channels": (8, 16), "layers_per_block": 1, "train_timesteps": 50}


def test_conditional_denoiser_trains_and_samples_with_guidance():
    from lightning_modules.diffusion.model import ConditionedDenoiser

    torch.manual_seed(0)
    model = ConditionedDenoiser(n_classes=3, **TINY)
    assert model.unet.class_embedding.num_embeddings == 4  # three classes and the null class
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    loss = model.training_step((images, torch.tensor([0, 1, 2, 0, 1, 2])), 0)
    loss.backward()
    assert torch.isfinite(loss)
    samples = model.sample(torch.tensor([0, 1, 2]), steps=3, guidance=1.5, seed=1)
    assert samples.shape == (3, 1, 8, 8) and 0 <= samples.min() and samples.max() <= 1
    again = model.sample(torch.tensor([0, 1, 2]), steps=3, guidance=1.5, seed=1)
    assert torch.equal(samples, again)  # seeded
    unconditional = ConditionedDenoiser(n_classes=None, **TINY)
    assert unconditional.sample(None, n=2, steps=2, sampler="dpm").shape == (2, 1, 8, 8)


def test_conditioning_checks():
    from lightning_modules.data import DatasetSplit
    from lightning_modules.diffusion import parse_condition
    from lightning_modules.diffusion.run import class_conditioning, cluster_conditioning

    data = DatasetSplit(np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1, 0, 1]), ["a", "b"])
    assert parse_condition("clusters-temi-k20") == ("clusters", "temi", 20)
    assert class_conditioning(data)[1] == 2
    with pytest.raises(ValueError, match="3 entries for 4 images"):
        cluster_conditioning(data, np.array([0, 1, 1]), 2)
    with pytest.raises(ValueError, match="K = 1"):
        cluster_conditioning(data, np.zeros(4, int), 1)
    with pytest.raises(ValueError, match="needs labels"):
        class_conditioning(DatasetSplit(data.images, np.full(4, -1), []))
    with pytest.raises(KeyError, match="did you mean 'class'"):
        parse_condition("clas")


PARAMS = {**TINY, "fit": "pad", "lr": 1e-3, "warmup_steps": 0, "ema_decay": 0.9, "p_uncond": 0.1, "batch_size": 16,
          "train_steps": 6, "checkpoint_every": 3, "n_samples": 20, "sampling_steps": 3, "sampler": "ddim",
          "guidance": 0.0, "sample_labels": "empirical"}


def test_a_killed_diffusion_run_resumes_from_its_checkpoint(tmp_path, monkeypatch, digits_pixels):
    from lightning_modules.data import DatasetSplit
    from lightning_modules.diffusion.model import ConditionedDenoiser
    from lightning_modules.diffusion.run import train_diffusion

    x, y = digits_pixels
    data = DatasetSplit(x[:64].reshape(-1, 1, 8, 8), y[:64], [str(d) for d in range(10)])
    original = ConditionedDenoiser.training_step

    def killed_after_step_4(self, batch, batch_idx):
        if self.global_step == 4:
            raise RuntimeError("killed")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ConditionedDenoiser, "training_step", killed_after_step_4)
    with pytest.raises(RuntimeError, match="killed"):
        train_diffusion(data, "class", tmp_path, PARAMS, {"spec": "pixels"}, progress=False)
    checkpoint = tmp_path / ".checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 3
    monkeypatch.setattr(ConditionedDenoiser, "training_step", original)
    record = train_diffusion(data, "class", tmp_path, PARAMS, {"spec": "pixels"}, progress=False)
    assert record["train_steps"] == 6 and np.isfinite(record["fd_pixels"]) and record["uses_labels"]
    assert np.load(tmp_path / "samples.npy").shape == (20, 1, 8, 8)
    assert not (tmp_path / ".checkpoints").exists()
