"""A class-conditional denoiser (C-EDM style): diffusers' UNet2DModel with a class embedding that has one
extra "null" class for classifier-free guidance, a DDPM noise schedule for training, DDIM or DPM-Solver for
sampling, and an EMA of the weights (diffusers' EMAModel) that sampling uses."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lightning_modules.diffusion import check_image_size
from lightning_modules.training import warmup_cosine

SAMPLERS = ("ddim", "dpm")


class ConditionedDenoiser(pl.LightningModule):
    """n_classes = None: unconditional. Otherwise labels 0..n_classes-1 condition the UNet and n_classes is
    the null label (used with probability p_uncond in training, and for the unconditional half of guidance)."""

    def __init__(self, image_size: int = 16, channels: int = 1, n_classes: int | None = None,
                 block_out_channels: tuple[int, ...] = (32, 64), layers_per_block: int = 1,
                 train_timesteps: int = 1000, p_uncond: float = 0.1, lr: float = 2e-4, weight_decay: float = 0.0,
                 warmup_steps: int = 0, ema_decay: float = 0.999):
        super().__init__()
        from diffusers import DDPMScheduler, UNet2DModel
        from diffusers.training_utils import EMAModel

        check_image_size(image_size, len(block_out_channels))
        self.save_hyperparameters()
        levels = len(block_out_channels)
        self.unet = UNet2DModel(
            sample_size=image_size, in_channels=channels, out_channels=channels, layers_per_block=layers_per_block,
            block_out_channels=tuple(block_out_channels), down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels, norm_num_groups=min(32, block_out_channels[0]),
            num_class_embeds=None if n_classes is None else n_classes + 1,
        )
        self.noise_schedule = DDPMScheduler(num_train_timesteps=train_timesteps)
        self.ema = EMAModel(self.unet.parameters(), decay=ema_decay)

    @property
    def conditional(self) -> bool:
        return self.hparams.n_classes is not None

    def _labels(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if labels is None:
            return torch.full((batch,), self.hparams.n_classes, device=self.device, dtype=torch.long)
        return labels.long()

    def training_step(self, batch, batch_idx):
        images, labels = batch
        noise = torch.randn_like(images)
        steps = torch.randint(0, self.hparams.train_timesteps, (len(images),), device=self.device)
        noisy = self.noise_schedule.add_noise(images, noise, steps)
        labels = self._labels(labels, len(images))
        if labels is not None:  # classifier-free guidance: sometimes train without the condition
            dropped = torch.rand(len(images), device=self.device) < self.hparams.p_uncond
            labels = torch.where(dropped, torch.full_like(labels, self.hparams.n_classes), labels)
        loss = F.mse_loss(self.unet(noisy, steps, class_labels=labels).sample, noise)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_fit_start(self) -> None:
        self.ema.to(self.device)  # the EMA's shadow weights are no module: Lightning does not move them

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.ema.step(self.unet.parameters())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.ema.load_state_dict(checkpoint["ema"])

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.unet.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        return {"optimizer": optimizer,
                "lr_scheduler": warmup_cosine(optimizer, self.trainer.estimated_stepping_batches, hp.warmup_steps)}

    @torch.no_grad()
    def sample(self, labels: torch.Tensor | None, n: int | None = None, steps: int = 50, sampler: str = "ddim",
               guidance: float = 0.0, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """Images in [0, 1] from the EMA weights: one per label (or `n` unconditional ones). guidance w mixes
        (1 + w) * conditional - w * unconditional noise predictions."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if sampler not in SAMPLERS:
            raise ValueError(f"diffusion.sampler = '{sampler}'; allowed: {', '.join(SAMPLERS)}")
        schedule_class = DDIMScheduler if sampler == "ddim" else DPMSolverMultistepScheduler
        count = len(labels) if labels is not None else n
        generator = torch.Generator().manual_seed(seed)
        hp = self.hparams
        self.ema.store(self.unet.parameters())
        self.ema.copy_to(self.unet.parameters())
        was_training = self.unet.training
        self.unet.eval()
        chunks = []
        try:
            for start in range(0, count, batch_size):
                size = min(batch_size, count - start)
                schedule = schedule_class.from_config(self.noise_schedule.config)
                schedule.set_timesteps(steps)
                x = torch.randn((size, hp.channels, hp.image_size, hp.image_size), generator=generator).to(self.device)
                cond = self._labels(None if labels is None else labels[start:start + size].to(self.device), size)
                for t in schedule.timesteps:
                    if cond is not None and guidance:
                        both = self.unet(torch.cat([x, x]), t, class_labels=torch.cat([cond, self._labels(None, size)])).sample
                        conditional, unconditional = both.chunk(2)
                        noise = (1 + guidance) * conditional - guidance * unconditional
                    else:
                        noise = self.unet(x, t, class_labels=cond).sample
                    x = schedule.step(noise, t, x).prev_sample
                chunks.append(((x.clamp(-1, 1) + 1) / 2).cpu())
        finally:
            self.ema.restore(self.unet.parameters())
            self.unet.train(was_training)
        return torch.cat(chunks)
