"""Cluster-conditioned diffusion: the generation metrics against formulas and scipy, the denoiser, its
checkpoint resumption, and the conditioning checks."""

from pathlib import Path

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
    from lightning_modules.diffusion.images import prepare_images

    images = digits_pixels[0][:5].reshape(-1, 1, 8, 8)
    padded = prepare_images(images, 16)
    assert padded.shape == (5, 1, 16, 16) and np.array_equal(padded[:, :, 4:12, 4:12], images)
    assert padded[:, :, :4].sum() == 0
    resized = prepare_images(images, 16, "resize")
    assert resized.shape == (5, 1, 16, 16) and 0 <= resized.min() and resized.max() <= 1
    with pytest.raises(ValueError, match="smaller than the images"):
        prepare_images(images, 4)


def test_sampling_labels_follow_the_cluster_frequencies():
    from lightning_modules.diffusion.conditioning import sample_labels

    labels = np.repeat([0, 1, 2], [700, 200, 100])
    drawn = sample_labels(labels, 3, 20_000, seed=0)
    np.testing.assert_allclose(np.bincount(drawn) / len(drawn), [0.7, 0.2, 0.1], atol=0.01)
    assert set(sample_labels(labels, 5, 1000, "uniform")) == {0, 1, 2, 3, 4}


MLP = {"name": "mlp", "hidden": 32, "blocks": 1}


def test_denoisers_by_name_and_the_unet_attends_at_16x16():
    from lightning_modules.diffusion import DENOISERS

    unet = DENOISERS.get("ddpmpp")((3, 32, 32), n_classes=4, channels=(16, 16, 16), layers_per_block=1, dropout=0.2)
    blocks = [type(block).__name__ for block in unet.unet.down_blocks]
    assert blocks == ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"]  # 32, 16, 8
    assert unet.unet.class_embedding.num_embeddings == 5  # four classes and the null class
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.2 for m in unet.modules())
    out = unet(torch.randn(2, 3, 32, 32), torch.tensor([0.1, -0.3]), torch.tensor([0, 4]))
    assert out.shape == (2, 3, 32, 32)
    mlp = DENOISERS.get("mlp")((1, 8, 8), n_classes=None, hidden=16, blocks=1)
    assert mlp(torch.randn(3, 1, 8, 8), torch.zeros(3)).abs().max() == 0  # zero-initialised output
    with pytest.raises(KeyError, match="did you mean 'mlp'"):
        DENOISERS.get("mpl")


def test_conditional_denoiser_trains_and_samples_with_guidance():
    from lightning_modules.diffusion.edm import EDMSettings
    from lightning_modules.diffusion.model import EDMDenoiser

    torch.manual_seed(0)
    model = EDMDenoiser((1, 8, 8), MLP, n_classes=3, edm={"steps": 3})
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    loss = model.training_step((images, torch.tensor([0, 1, 2, 0, 1, 2])), 0)
    loss.backward()
    assert torch.isfinite(loss)
    samples = model.sample(torch.tensor([0, 1, 2]), guidance=1.5, seed=1)
    assert samples.shape == (3, 1, 8, 8) and 0 <= samples.min() and samples.max() <= 1
    assert torch.equal(samples, model.sample(torch.tensor([0, 1, 2]), guidance=1.5, seed=1))  # seeded
    unconditional = EDMDenoiser((1, 8, 8), MLP, n_classes=None)
    assert unconditional.sample(None, n=2, settings=EDMSettings(steps=2)).shape == (2, 1, 8, 8)


def test_ema_follows_the_weights_on_edms_schedule():
    from lightning_modules.diffusion.model import EDMDenoiser

    model = EDMDenoiser((1, 8, 8), MLP, ema_halflife_kimg=0.5, ema_rampup_ratio=None)
    before = [p.detach().clone() for p in model.ema.parameters()]
    with torch.no_grad():
        for parameter in model.denoiser.parameters():
            parameter.add_(1.0)
    model.update_ema(500)  # β = 0.5^(500/500) = 0.5
    for old, new, current in zip(before, model.ema.parameters(), model.denoiser.parameters()):
        torch.testing.assert_close(new, 0.5 * old + 0.5 * current)
    assert float(model.images_seen) == 500


def test_conditioning_checks():
    from lightning_modules.data import DatasetSplit
    from lightning_modules.diffusion import parse_condition
    from lightning_modules.diffusion.conditioning import class_conditioning, cluster_conditioning

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


PARAMS = {"image_size": None, "fit": "pad", "network": MLP, "edm": {"steps": 3}, "lr": 1e-3, "lr_rampup_kimg": 0,
          "ema_halflife_kimg": 0.5, "ema_rampup_ratio": 0.05, "p_uncond": 0.1, "batch_size": 16, "train_steps": 6,
          "checkpoint_every": 3, "devices": 1, "strategy": "auto", "precision": "32-true", "n_samples": 20,
          "guidance": 0.0, "sample_labels": "empirical",
          "metrics": {"networks": ["backbone"], "kid_subsets": 10, "kid_subset_size": 1000}}


def pixel_networks():
    from lightning_modules.diffusion.scoring import feature_networks

    return feature_networks(PARAMS["metrics"], {"spec": "pixels"})


def test_a_killed_diffusion_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, digits_pixels):
    """Checkpoints every 3 steps of 6, three batches per epoch: a run killed after step 4 resumes from the
    epoch-end checkpoint (weights, EMA, images seen, batch order) and ends with the samples of a run that was
    never interrupted."""
    from lightning_modules.data import DatasetSplit
    from lightning_modules.diffusion.model import EDMDenoiser
    from lightning_modules.diffusion.run import train_diffusion

    x, y = digits_pixels
    data = DatasetSplit(x[:48].reshape(-1, 1, 8, 8), y[:48], [str(d) for d in range(10)])
    whole = train_diffusion(data, "class", tmp_path / "whole", PARAMS, pixel_networks(), progress=False)
    original = EDMDenoiser.training_step

    def killed_after_step_4(self, batch, batch_idx):
        if self.global_step == 4:
            raise RuntimeError("killed")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(EDMDenoiser, "training_step", killed_after_step_4)
    with pytest.raises(RuntimeError, match="killed"):
        train_diffusion(data, "class", tmp_path / "resumed", PARAMS, pixel_networks(), progress=False)
    state = torch.load(tmp_path / "resumed" / ".checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 3 and float(state["state_dict"]["images_seen"]) == 48
    assert any(name.startswith("ema.") for name in state["state_dict"])  # the EMA weights are checkpointed
    monkeypatch.setattr(EDMDenoiser, "training_step", original)
    record = train_diffusion(data, "class", tmp_path / "resumed", PARAMS, pixel_networks(), progress=False)
    assert record["train_steps"] == 6 and np.isfinite(record["fd_backbone"]) and record["uses_labels"]
    assert record["network_evaluations"] == 5 and record["kid"]["subset_size"] == 10  # < the 20 samples
    np.testing.assert_array_equal(np.load(tmp_path / "whole" / "samples.npy"),
                                  np.load(tmp_path / "resumed" / "samples.npy"))
    assert record["fd_backbone"] == whole["fd_backbone"]
    assert not (tmp_path / "resumed" / ".checkpoints").exists()


def test_the_feature_classifier_learns_digits_and_scores_class_consistency(tmp_path, digits_pixels):
    from lightning_modules.diffusion.features import ClassifierFeatures, class_consistency, train_classifier

    x, y = digits_pixels
    record = train_classifier(x.reshape(-1, 1, 8, 8), y, tmp_path, epochs=15)
    assert record["held_out_accuracy"] > 0.9 and record["n_classes"] == 10
    network = ClassifierFeatures(tmp_path)
    assert network(x[:5].reshape(-1, 1, 8, 8)).shape == (5, 128)
    assert (network.predict(x[:200].reshape(-1, 1, 8, 8)) == y[:200]).mean() > 0.9
    # cluster 0 holds classes (3, 3, 5) -> majority 3; cluster 1 holds (7, 2, 2) -> 2; cluster 2 holds no image
    train_conditioning, train_labels = np.array([0, 0, 0, 1, 1, 1]), np.array([3, 3, 5, 7, 2, 2])
    predicted, conditioning = np.array([3, 5, 2, 2, 4]), np.array([0, 0, 1, 1, 2])
    assert class_consistency(predicted, conditioning, train_conditioning, train_labels) == pytest.approx(3 / 5)
    # a tie (one 4, one 1) goes to the smaller class
    assert class_consistency(np.array([1]), np.array([0]), np.array([0, 0]), np.array([4, 1])) == 1.0
    with pytest.raises(ValueError, match="at least two classes"):
        train_classifier(x[:10].reshape(-1, 1, 8, 8), np.full(10, -1), tmp_path / "none")


def test_scores_have_a_real_vs_real_floor_and_kid_subsets_smaller_than_the_sets():
    from lightning_modules.diffusion.scoring import real_reference_sets, score_samples

    rng = np.random.default_rng(0)
    real, floor = real_reference_sets(100, 80, seed=0)
    assert len(real) == len(floor) == 50 and not set(real) & set(floor)
    images = rng.random((100, 1, 2, 2))
    identity = {"pixels": lambda batch: batch.reshape(len(batch), -1).astype(np.float64)}
    record = score_samples(images[floor] + 0.3, images[real], images[floor], identity, 10, 1000, seed=0)
    # the floor set shifted by 0.3: same covariances, so only the squared mean difference changes
    gap = images[floor].reshape(50, -1).mean(0) - images[real].reshape(50, -1).mean(0)
    expected = record["fd_floor_pixels"] - (gap**2).sum() + ((gap + 0.3) ** 2).sum()
    assert record["fd_pixels"] == pytest.approx(expected, rel=1e-6)
    assert record["kid"] == {"subsets": 10, "subset_size": 25} and record["kid_std_pixels"] > 0


def test_missing_inception_weights_stop_in_one_line_naming_the_file(tmp_path):
    from lightning_modules.diffusion.features import InceptionFeatures

    with pytest.raises(FileNotFoundError) as error:
        InceptionFeatures(tmp_path / "missing.pth")
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "missing.pth") in message and "curl -L -o" in message


def test_inception_features_load_a_weights_file(tmp_path, monkeypatch):
    """The real loader with random weights written here: 2,048-d features for grey and colour images."""
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    from lightning_modules.diffusion.features import InceptionFeatures

    with monkeypatch.context() as patch:  # build the architecture without any weights, then save it
        patch.setattr(fidelity, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(torch.nn.Module, "load_state_dict", lambda self, state, *args, **kwargs: None)
        torch.manual_seed(0)
        random_network = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(random_network.state_dict(), tmp_path / "weights.pth")
    network = InceptionFeatures(tmp_path / "weights.pth")
    grey = network(np.random.default_rng(0).random((2, 1, 8, 8)))
    colour = network(np.random.default_rng(0).random((2, 3, 32, 32)))
    assert grey.shape == colour.shape == (2, 2048) and np.isfinite(grey).all()


def test_report_summary_intervals_and_verdict():
    import pandas as pd

    from lightning_modules.diffusion.summary import summarise, verdict

    runs = pd.DataFrame({
        "dataset": ["d"] * 9, "cond": ["none"] * 3 + ["class"] * 3 + ["clusters-kmeans-k5"] * 3,
        "method": [None] * 6 + ["kmeans"] * 3, "k": [np.nan] * 6 + [5] * 3, "seed": [0, 1, 2] * 3,
        "fd_classifier": [10, 11, 12, 5, 5.5, 6.2, 9, 11, 13], "fd_floor_classifier": [1.0] * 9})
    summary = summarise(runs, "fd_classifier")
    assert summary.seeds.tolist() == [3, 3, 3] and summary.floor.tolist() == [1.0] * 3
    # class − none per seed: −5, −5.5, −5.8 (Holm over 2 tests); clusters: −1, 0, +1
    sentence = verdict(runs, "fd_classifier")
    assert "beats unconditional fd_classifier: class" in sentence
    assert "within noise: clusters-kmeans-k5" in sentence and "Holm over 2 tests" in sentence
    assert "no unconditional runs" in verdict(runs[runs.seed == 0], "fd_classifier")


def test_the_loss_is_logged_on_the_steps_lightning_writes_to_the_logger(tmp_path):
    """The denoiser calls self.log only on logging steps (it costs a tenth of a small CPU step): the logger gets
    every one Lightning schedules (every log_every_n_steps-th step), and the last step's loss is logged too, for the
    job log's last step line."""
    import csv

    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from lightning_modules.diffusion.model import EDMDenoiser, ImagesDataModule

    images = np.random.default_rng(0).random((64, 1, 8, 8)).astype(np.float32)
    model = EDMDenoiser((1, 8, 8), MLP, n_classes=None, batch_size=8)
    logger = CSVLogger(tmp_path)
    trainer = pl.Trainer(max_steps=12, log_every_n_steps=5, logger=logger, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    logged = []
    original = model.log
    model.log = lambda *args, **kwargs: (logged.append(model.global_step), original(*args, **kwargs))
    trainer.fit(model, datamodule=ImagesDataModule(images, None, 8))
    with open(Path(logger.log_dir) / "metrics.csv") as table:
        written = [int(row["step"]) for row in csv.DictReader(table) if row.get("train/loss")]
    assert written == [4, 9]  # Lightning's steps count from 0: the 5th and the 10th
    assert logged == [4, 9, 11] and "train/loss" in trainer.callback_metrics


def test_batches_gathered_at_once_are_the_batches_tensordataset_gives():
    """core.batches: one indexing operation per batch returns what TensorDataset's per-sample fetch and collate did,
    in the same seeded order, so a run's batches (and its results) are unchanged."""
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_modules.diffusion.model import ImagesDataModule

    images = np.random.default_rng(0).random((50, 1, 8, 8)).astype(np.float32)
    labels = np.arange(50) % 3
    gathered = list(ImagesDataModule(images, labels, 8, seed=3).train_dataloader())
    reference = ImagesDataModule(images, labels, 8, seed=3)  # its generator, fresh
    per_sample = list(DataLoader(TensorDataset(reference.x, reference.y), batch_size=8, shuffle=True, drop_last=True,
                                 generator=reference.generators["order"]))
    assert len(gathered) == len(per_sample) == 6
    for (x, y), (x_ref, y_ref) in zip(gathered, per_sample):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
