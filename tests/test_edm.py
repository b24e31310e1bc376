"""EDM's pieces against their formulas (Karras et al. 2022, Table 1 and Algorithm 2; NVlabs/edm), and the
sampler end to end on Gaussian data, whose ideal denoiser is closed-form."""

import math

import numpy as np
import pytest
import torch

from lightning_modules.diffusion.edm import (EDMSettings, Preconditioned, edm_loss, ema_beta, guided, heun_sample,
                                             loss_weight, noise_levels, preconditioning)


def test_preconditioning_at_sigma_equal_to_sigma_data_and_at_the_extremes():
    c_skip, c_out, c_in, c_noise = preconditioning(torch.tensor(0.5), 0.5)
    assert float(c_skip) == pytest.approx(0.5)                      # σd² / (2σd²)
    assert float(c_out) == pytest.approx(0.5 / math.sqrt(2))        # σ·σd / sqrt(2σd²)
    assert float(c_in) == pytest.approx(1 / (0.5 * math.sqrt(2)))   # 1 / sqrt(2σd²)
    assert float(c_noise) == pytest.approx(math.log(0.5) / 4)
    c_skip, c_out, _, _ = preconditioning(torch.tensor(1e-4), 0.5)  # no noise: D(x) = x
    assert float(c_skip) == pytest.approx(1, abs=1e-7) and float(c_out) == pytest.approx(1e-4, rel=1e-6)
    c_skip, c_out, _, _ = preconditioning(torch.tensor(1e4), 0.5)   # all noise: D predicts the scaled F
    assert float(c_skip) == pytest.approx(0, abs=1e-8) and float(c_out) == pytest.approx(0.5, rel=1e-6)


def test_loss_weight_gives_the_network_unit_weight_at_every_sigma():
    sigma = torch.logspace(-3, 2, 11, dtype=torch.float64)
    _, c_out, _, _ = preconditioning(sigma, 0.5)
    torch.testing.assert_close(loss_weight(sigma, 0.5) * c_out**2, torch.ones_like(sigma))
    assert float(loss_weight(torch.tensor(1.0), 0.5)) == pytest.approx((1 + 0.25) / 0.25)


class ZeroNetwork(torch.nn.Module):
    """F = 0, so D(x; σ) = c_skip(σ)·x: the loss is worked by hand."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, c_noise, labels=None):
        return torch.zeros_like(x)


def test_edm_loss_by_hand_with_a_zero_network():
    images = torch.tensor([[[[0.2, -0.4]]], [[[0.9, 0.1]]]])  # (2, 1, 1, 2)
    settings = EDMSettings()
    loss = edm_loss(Preconditioned(ZeroNetwork()), images, None, settings, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)  # the same draws, in the same order
    sigma = (torch.randn((2, 1, 1, 1), generator=generator) * 1.2 - 1.2).exp()
    noise = torch.randn(images.shape, generator=generator) * sigma
    c_skip = 0.25 / (sigma**2 + 0.25)
    expected = ((sigma**2 + 0.25) / (sigma * 0.5) ** 2 * (c_skip * (images + noise) - images) ** 2).sum((1, 2, 3)).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_training_noise_levels_are_log_normal():
    generator = torch.Generator().manual_seed(0)
    normal = torch.randn(200_000, generator=generator)
    sigma = (normal * 1.2 - 1.2).exp()
    assert float(sigma.log().mean()) == pytest.approx(-1.2, abs=0.01)
    assert float(sigma.log().std()) == pytest.approx(1.2, abs=0.01)


def test_noise_levels_follow_the_rho_schedule():
    levels = noise_levels(18, 0.002, 80, 7)
    assert len(levels) == 19 and float(levels[-1]) == 0
    assert float(levels[0]) == pytest.approx(80) and float(levels[17]) == pytest.approx(0.002)
    roots = levels[:-1] ** (1 / 7)  # equally spaced in σ^(1/ρ)
    np.testing.assert_allclose(np.diff(roots.numpy()), np.diff(roots.numpy())[0], rtol=1e-9)
    assert torch.all(levels[1:] < levels[:-1])
    assert noise_levels(1, 0.002, 80).tolist() == [80.0, 0.0]  # one step goes straight to σ = 0


class Counting:
    def __init__(self, denoise):
        self.denoise, self.calls = denoise, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.denoise(x, sigma)


def test_heun_uses_two_evaluations_per_step_but_one_at_the_last():
    counter = Counting(lambda x, sigma: torch.zeros_like(x))
    heun_sample(counter, torch.randn(4, 2), EDMSettings(steps=18))
    assert counter.calls == 35


def gaussian_denoiser(mean: torch.Tensor, cov: torch.Tensor):
    """E[y | y + σn = x] for y ~ N(μ, Σ): μ + Σ (Σ + σ²I)⁻¹ (x − μ)."""
    mean, cov = mean.double(), cov.double()

    def denoise(x, sigma):
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        gain = cov @ torch.linalg.inv(cov + sigma**2 * torch.eye(len(mean), dtype=torch.float64))
        return mean + (x.double() - mean) @ gain.T

    return denoise


@pytest.mark.parametrize(("steps", "churn"), [(32, 0.0), (64, 10.0)])
def test_heun_sampling_with_the_ideal_denoiser_reproduces_a_gaussian(steps, churn):
    """Deterministic and with churn (its SDE steps converge more slowly: at γ = 0.16, 64 steps are within 0.006
    of the covariance, 32 within 0.016)."""
    mean = torch.tensor([0.3, -0.2, 0.1])
    root = torch.tensor([[0.5, 0.0, 0.0], [0.2, 0.3, 0.0], [-0.1, 0.1, 0.2]])
    cov = root @ root.T
    settings = EDMSettings(steps=steps, churn=churn, churn_min=0.05, churn_max=50)
    generator = torch.Generator().manual_seed(0)
    samples = heun_sample(gaussian_denoiser(mean, cov), torch.randn(40_000, 3, generator=generator), settings,
                          generator)
    np.testing.assert_allclose(samples.mean(0).numpy(), mean.numpy(), atol=0.01)
    np.testing.assert_allclose(np.cov(samples.numpy(), rowvar=False), cov.numpy(), atol=0.01)


def test_guidance_mixes_conditional_and_null_class_predictions():
    class LabelShift(torch.nn.Module):  # D(x; σ, c) = x + c: each label shifts by itself, the null one by 9
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, sigma, labels):
            return x + labels.view(-1, 1).float()

    x = torch.zeros(2, 1)
    labels = torch.tensor([1, 2])
    torch.testing.assert_close(guided(LabelShift(), labels, 9, 0.0)(x, 1.0), torch.tensor([[1.0], [2.0]]))
    # (1 + w)·c − w·9 with w = 0.5
    torch.testing.assert_close(guided(LabelShift(), labels, 9, 0.5)(x, 1.0), torch.tensor([[-3.0], [-1.5]]))


def test_conditional_sampling_reaches_each_class_mean():
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5]])
    cov = torch.eye(2) * 0.04

    def denoise(x, sigma, labels):
        return torch.stack([gaussian_denoiser(means[c], cov)(row[None], sigma)[0] for row, c in zip(x, labels)])

    labels = torch.tensor([0, 1] * 200)
    samples = heun_sample(lambda x, sigma: denoise(x, sigma, labels), torch.randn(400, 2), EDMSettings(steps=12))
    np.testing.assert_allclose(samples[labels == 0].mean(0).numpy(), [-1, 0], atol=0.05)
    np.testing.assert_allclose(samples[labels == 1].mean(0).numpy(), [1, 0.5], atol=0.05)


def test_ema_half_life_and_its_ramp_up():
    # 500 kimg half-life, batch 512: β = 0.5^(512/500000)
    assert ema_beta(512, 10**9, 500, 0.05) == pytest.approx(0.5 ** (512 / 500_000))
    # early on the half-life is 5% of the images seen: 0.05 × 10,240 = 512 images -> β = 0.5
    assert ema_beta(512, 10_240, 500, 0.05) == pytest.approx(0.5)
    assert ema_beta(512, 10_240, 500, None) == pytest.approx(0.5 ** (512 / 500_000))
