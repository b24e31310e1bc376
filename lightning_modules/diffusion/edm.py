"""EDM (Karras et al., NeurIPS 2022) as NVlabs/edm computes it: the preconditioned denoiser
(`training/networks.py` EDMPrecond), the training loss (`training/loss.py` EDMLoss), the ρ noise-level
schedule and Heun's second-order sampler with optional churn (`generate.py` edm_sampler), the EMA half-life
schedule (`training/training_loop.py`), and classifier-free guidance through a null class (C-EDM's labels).

Written here, not taken from diffusers: diffusers' EDM schedulers expect the network to predict in their own
parameterisation and have no Heun-with-churn step that matches edm_sampler step for step, and neither gives the
training loss. Everything below is plain torch, so the formulas are tested without Lightning."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from lightning_modules.core.checks import schema_defaults

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # D(x; sigma) -> the denoised x


_DEFAULTS = schema_defaults("diffusion", "edm")  # EDM's own (config F; NVlabs/edm train.py, generate.py)


@dataclass(frozen=True)
class EDMSettings:
    """EDM's formulation and sampler (config F of the paper; NVlabs/edm `train.py` --precond=edm, `generate.py`),
    its defaults the schema's `diffusion.edm`."""

    sigma_data: float = _DEFAULTS["sigma_data"]
    p_mean: float = _DEFAULTS["p_mean"]
    p_std: float = _DEFAULTS["p_std"]
    sigma_min: float = _DEFAULTS["sigma_min"]
    sigma_max: float = _DEFAULTS["sigma_max"]
    rho: float = _DEFAULTS["rho"]
    steps: int = _DEFAULTS["steps"]  # 18 Heun steps = 35 network evaluations (CIFAR-10)
    churn: float = _DEFAULTS["churn"]  # S_churn: 0 = the deterministic sampler
    churn_min: float = _DEFAULTS["churn_min"]  # S_min
    churn_max: float = _DEFAULTS["churn_max"]  # S_max
    churn_noise: float = _DEFAULTS["churn_noise"]  # S_noise


def preconditioning(sigma: torch.Tensor, sigma_data: float = _DEFAULTS["sigma_data"]):
    """c_skip, c_out, c_in, c_noise of D(x; σ) = c_skip·x + c_out·F(c_in·x; c_noise)."""
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4


def loss_weight(sigma: torch.Tensor, sigma_data: float = _DEFAULTS["sigma_data"]) -> torch.Tensor:
    """λ(σ) = (σ² + σ_data²) / (σ·σ_data)²: with it, F's effective target has unit weight at every σ."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


class Preconditioned(nn.Module):
    """D(x; σ, labels) around a raw network F(x_in, c_noise, labels); labels may be None (unconditional)."""

    def __init__(self, network: nn.Module, sigma_data: float = _DEFAULTS["sigma_data"]):
        super().__init__()
        self.network = network
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))
        sigma = sigma.expand(len(x), *sigma.shape[1:])
        c_skip, c_out, c_in, c_noise = preconditioning(sigma, self.sigma_data)
        raw = self.network((c_in * x).to(x.dtype), c_noise.flatten(), labels)
        return c_skip * x + c_out * raw.to(torch.float32)


def edm_loss(denoiser: Preconditioned, images: torch.Tensor, labels: torch.Tensor | None, settings: EDMSettings,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """EDMLoss: σ ~ exp(N(P_mean, P_std²)), n ~ N(0, σ²I), λ(σ)·‖D(y + n; σ) − y‖² summed over pixels and
    averaged over the batch (the official loss sums, then divides by the batch size)."""
    shape = (len(images),) + (1,) * (images.ndim - 1)
    normal = torch.randn(shape, generator=generator, device=images.device)
    sigma = (normal * settings.p_std + settings.p_mean).exp()
    noise = torch.randn(images.shape, generator=generator, device=images.device) * sigma
    denoised = denoiser(images + noise, sigma.flatten(), labels)
    per_image = (loss_weight(sigma, settings.sigma_data) * (denoised - images) ** 2).flatten(1).sum(1)
    return per_image.mean()


def noise_levels(steps: int, sigma_min: float = _DEFAULTS["sigma_min"], sigma_max: float = _DEFAULTS["sigma_max"],
                 rho: float = _DEFAULTS["rho"]) -> torch.Tensor:
    """σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ for i < N, then σ_N = 0 (float64)."""
    if steps < 1:
        raise ValueError(f"the EDM sampler needs at least one step, got {steps}")
    index = torch.arange(steps, dtype=torch.float64)
    fraction = index / max(steps - 1, 1)
    levels = (sigma_max ** (1 / rho) + fraction * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([levels, torch.zeros(1, dtype=torch.float64)])


@torch.no_grad()
def heun_sample(denoise: Denoise, latents: torch.Tensor, settings: EDMSettings,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """edm_sampler: x_0 = latents·σ_max, then per step optional churn (σ̂ = σ + γσ with fresh noise), an Euler
    step on dx/dσ = (x − D(x; σ))/σ and Heun's correction except at the last step (2N − 1 evaluations).
    `latents` are standard normal; the result is in float64 like the official sampler's."""
    levels = noise_levels(settings.steps, settings.sigma_min, settings.sigma_max, settings.rho).to(latents.device)
    x_next = latents.to(torch.float64) * levels[0]
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:])):
        x = x_next
        gamma = (min(settings.churn / settings.steps, math.sqrt(2) - 1)
                 if settings.churn_min <= sigma <= settings.churn_max else 0.0)
        sigma_hat = sigma + gamma * sigma
        if gamma > 0:
            fresh = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + (sigma_hat**2 - sigma**2).sqrt() * settings.churn_noise * fresh
        slope = (x - denoise(x, sigma_hat).to(torch.float64)) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * slope
        if i < settings.steps - 1:
            slope_next = (x_next - denoise(x_next, sigma_next).to(torch.float64)) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * (slope + slope_next) / 2
    return x_next


def guided(denoiser: Preconditioned, labels: torch.Tensor | None, null_label: int | None,
           guidance: float = 0.0) -> Denoise:
    """D(x; σ) for the sampler: conditional on `labels`, and with guidance w > 0 the classifier-free mix
    (1 + w)·D(x; σ, c) − w·D(x; σ, ∅), ∅ being the null class the network was trained with."""
    dtype = next(denoiser.parameters()).dtype

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype)
        if labels is None or not guidance:
            return denoiser(x, sigma, labels)
        null = torch.full_like(labels, null_label)
        both = denoiser(torch.cat([x, x]), sigma, torch.cat([labels, null]))
        conditional, unconditional = both.chunk(2)
        return (1 + guidance) * conditional - guidance * unconditional

    return denoise


def ema_beta(batch_size: int, images_seen: int, halflife_kimg: float, rampup_ratio: float | None) -> float:
    """training_loop.py: the EMA's half-life is `halflife_kimg` thousand images, capped at rampup_ratio × the
    images seen so far (early weights are forgotten fast); β = 0.5^(batch / half-life)."""
    halflife = halflife_kimg * 1000
    if rampup_ratio is not None:
        halflife = min(halflife, images_seen * rampup_ratio)
    return 0.5 ** (batch_size / max(halflife, 1e-8))


__all__ = ["EDMSettings", "Preconditioned", "edm_loss", "ema_beta", "guided", "heun_sample", "loss_weight",
           "noise_levels", "preconditioning"]
