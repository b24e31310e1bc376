"""A class-conditional EDM denoiser as a LightningModule (C-EDM's model): EDM's preconditioning around a
network from the DENOISERS registry, EDM's loss, Adam with EDM's linear learning-rate ramp-up, an EMA of the
weights on EDM's half-life schedule (what sampling uses), and Heun sampling with classifier-free guidance."""

from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch

from lightning_modules.diffusion.edm import EDMSettings, Preconditioned, edm_loss, ema_beta, guided, heun_sample
from lightning_modules.core.seeded_data import ShuffledTensors


class EDMDenoiser(pl.LightningModule):
    """n_classes = None: unconditional. Otherwise labels 0..n_classes−1 condition the network and n_classes
    is the null label, used with probability p_uncond in training and for the unconditional half of guidance."""

    def __init__(self, image_shape: tuple[int, int, int], network: dict, n_classes: int | None = None,
                 edm: dict | None = None, p_uncond: float = 0.1, lr: float = 1e-3, lr_rampup_images: int = 0,
                 ema_halflife_kimg: float = 500.0, ema_rampup_ratio: float | None = 0.05, batch_size: int = 512,
                 seed: int = 0):
        super().__init__()
        from lightning_modules.diffusion import DENOISERS

        self.save_hyperparameters()
        options = {key: value for key, value in network.items() if key != "name"}
        raw = DENOISERS.get(network["name"])(tuple(image_shape), n_classes=n_classes, **options)
        self.denoiser = Preconditioned(raw, self.settings.sigma_data)
        self.ema = copy.deepcopy(self.denoiser)  # the averaged weights start as the initial ones
        self.ema.requires_grad_(False)
        # images seen by the whole job (all ranks): EDM's EMA and lr ramp count images, not steps
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.float64))

    @property
    def settings(self) -> EDMSettings:
        return EDMSettings(**(self.hparams.edm or {}))

    @property
    def conditional(self) -> bool:
        return self.hparams.n_classes is not None

    def _global_batch(self, local: int) -> int:
        return local * (self.trainer.world_size if self._trainer is not None else 1)

    def _step_generator(self) -> torch.Generator:
        """The noise of one step on one rank, seeded by (seed, step, rank): a resumed run draws what an
        uninterrupted one would have, with no generator state to checkpoint."""
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self._trainer is not None else (1, 0)
        seed = (self.hparams.seed * 1_000_003 + self.global_step * world + rank) % 2**63
        return torch.Generator(device=self.device).manual_seed(seed)

    def _logs_this_step(self) -> bool:
        """Whether Lightning writes this step's metrics to the logger: only then is the loss logged, as self.log
        costs ~0.5 ms, a tenth of a small CPU step."""
        trainer, step = self._trainer, self.global_step + 1
        return trainer is not None and (step % trainer.log_every_n_steps == 0 or step == trainer.max_steps)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        generator = self._step_generator()
        if self.conditional:  # classifier-free guidance: sometimes train with the null class
            dropped = torch.rand(len(images), generator=generator, device=self.device) < self.hparams.p_uncond
            labels = torch.where(dropped, torch.full_like(labels, self.hparams.n_classes), labels.long())
        else:
            labels = None
        self._batch_images = len(images)
        loss = edm_loss(self.denoiser, images, labels, self.settings, generator)
        if self._logs_this_step():
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # EDM's learning-rate ramp-up over the first lr_rampup_images, and its nan_to_num on gradients
        ramp = self.hparams.lr_rampup_images
        factor = min(float(self.images_seen) / ramp, 1.0) if ramp else 1.0
        for group in optimizer.param_groups:
            group["lr"] = self.hparams.lr * factor
        for parameter in self.denoiser.parameters():
            if parameter.grad is not None:
                torch.nan_to_num(parameter.grad, nan=0, posinf=1e5, neginf=-1e5, out=parameter.grad)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema(self._batch_images)  # here, not in on_train_batch_end: checkpoints are written before that

    def update_ema(self, local_batch: int) -> None:
        global_batch = self._global_batch(local_batch)
        # training_loop.py computes β from the images seen before this step (with the ramp-up, β = 0 at the
        # first: the EMA becomes the weights), then counts the batch
        beta = ema_beta(global_batch, int(self.images_seen), self.hparams.ema_halflife_kimg,
                        self.hparams.ema_rampup_ratio)
        with torch.no_grad():  # ema ← β·ema + (1 − β)·weights, one fused call over all tensors
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.denoiser.parameters()), 1 - beta)
        self.images_seen += global_batch

    def configure_optimizers(self):
        # NVlabs/edm train.py: Adam, betas (0.9, 0.999), eps 1e-8, no weight decay (fused: the same update in
        # one kernel, ~10% faster per step for the small CPU denoisers)
        return torch.optim.Adam(self.denoiser.parameters(), lr=self.hparams.lr, betas=(0.9, 0.999), eps=1e-8,
                                fused=True)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor | None, n: int | None = None, guidance: float = 0.0, seed: int = 0,
               batch_size: int = 1024, settings: EDMSettings | None = None) -> torch.Tensor:
        """Images in [0, 1] from the EMA weights: one per label (or `n` unconditional ones)."""
        settings = settings or self.settings
        count = len(labels) if labels is not None else n
        generator = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.ema.training
        self.ema.eval()
        chunks = []
        try:
            for start in range(0, count, batch_size):
                size = min(batch_size, count - start)
                latents = torch.randn((size, *self.hparams.image_shape), generator=generator, device=self.device)
                batch_labels = self._labels(labels, start, size)
                denoise = guided(self.ema, batch_labels, self.hparams.n_classes, guidance)
                x = heun_sample(denoise, latents, settings, generator)
                chunks.append(((x.clamp(-1, 1) + 1) / 2).float().cpu())
        finally:
            self.ema.train(was_training)
        return torch.cat(chunks)

    def _labels(self, labels: torch.Tensor | None, start: int, size: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if labels is None:  # unconditional samples from a conditional model: the null class
            return torch.full((size,), self.hparams.n_classes, device=self.device, dtype=torch.long)
        return labels[start:start + size].to(self.device).long()


class ImagesDataModule(ShuffledTensors):
    """Shuffled batches of (image, label), the last short batch dropped; the shuffling generator is checkpointed
    (under DDP, Lightning's DistributedSampler is seeded by the epoch instead)."""

    def __init__(self, images, labels, batch_size: int, seed: int = 0):
        import numpy as np

        super().__init__(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
                         torch.from_numpy(np.full(len(images), -1) if labels is None else np.asarray(labels)),
                         batch_size, seed, drop_last=True)
