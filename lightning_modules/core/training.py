"""What every Lightning training here shares: one checkpoint file, replaced as training goes, that a rerun
of the same job resumes from; and the learning-rate schedule (linear warm-up, then cosine)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)
CHECKPOINT = "last.ckpt"
CHECKPOINT_DIR = ".checkpoints"  # inside a run's folder while it trains; removed once its artifacts are written


IDENTITY_KEY = "clusterlab_identity"  # what run a checkpoint belongs to, stored inside it


def run_identity(module, *data, **settings) -> dict:
    """What a checkpoint must match to be resumed from: the module's class and hyper-parameters, a fingerprint
    of the training data and any other `settings` that shape training (seed, batch size, ...)."""
    from lightning_modules.core.io import arrays_fingerprint

    return {"module": f"{type(module).__module__}.{type(module).__qualname__}",
            "hparams": repr(sorted((str(k), repr(v)) for k, v in dict(getattr(module, "hparams", {})).items())),
            "data": arrays_fingerprint(*(d for d in data if d is not None)),
            "settings": repr(sorted((k, repr(v)) for k, v in settings.items()))}


def checkpoint_mismatch(path: Path, identity: dict) -> str | None:
    """Why the checkpoint at `path` cannot be resumed from (None when it can): it does not load (truncated by a
    kill or a full disk, other bytes), or it belongs to another run (module, hyper-parameters, data)."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any failure to load means: do not resume from it
        return f"it does not load ({type(error).__name__}{': ' + str(error).splitlines()[0] if str(error) else ''})"
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        return "it is not a Lightning checkpoint"
    stored = checkpoint.get(IDENTITY_KEY)
    if stored is None:
        return "it records no run identity (written by an older version)"
    differs = [key for key in ("module", "hparams", "data", "settings") if stored.get(key) != identity.get(key)]
    return f"it belongs to another run (its {', '.join(differs)} differ)" if differs else None


def _atomic_checkpoint_io():
    """Lightning's TorchCheckpointIO, writing through a temporary file that is fsynced, then renamed: a kill or a
    full disk never leaves a `last.ckpt` that looks complete (`io.save_torch`)."""
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

    from lightning_modules.core.io import save_torch

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            save_torch(path, checkpoint)

    return AtomicCheckpointIO()


def resumable(checkpoint_dir, identity: dict, every_n_epochs: int | None = None,
              every_n_train_steps: int | None = None):
    """(callbacks, ckpt_path) for `Trainer(callbacks=...)` and `trainer.fit(..., ckpt_path=...)`: a checkpoint
    (weights, optimiser, schedule, whatever the modules add in `state_dict` / `on_save_checkpoint`, and
    `identity` from `run_identity`) is written atomically to `{checkpoint_dir}/last.ckpt` every so many epochs or
    steps; ckpt_path is that file when an earlier, interrupted run of the same run left one (else None). A
    checkpoint that does not load or belongs to another run is moved aside (`last.ckpt.damaged-<time>`, kept for
    inspection) with one warning, and training starts from scratch: what an interrupted run left behind never
    makes a rerun fail."""
    import time

    from pytorch_lightning.callbacks import ModelCheckpoint

    class VerifiedCheckpoint(ModelCheckpoint):
        def setup(self, trainer, pl_module, stage) -> None:
            super().setup(trainer, pl_module, stage)
            trainer.strategy.checkpoint_io = _atomic_checkpoint_io()

        def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
            checkpoint[IDENTITY_KEY] = identity

    callback = VerifiedCheckpoint(dirpath=checkpoint_dir, filename=Path(CHECKPOINT).stem, save_top_k=1,
                                  every_n_epochs=every_n_epochs, every_n_train_steps=every_n_train_steps,
                                  save_on_train_epoch_end=every_n_epochs is not None, enable_version_counter=False)
    last = Path(checkpoint_dir) / CHECKPOINT
    if not last.exists():
        return [callback], None
    problem = checkpoint_mismatch(last, identity)
    if problem is None:
        log.info("resuming from %s", last)
        return [callback], str(last)
    aside = last.with_name(f"{last.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    last.rename(aside)
    log.warning("not resuming from %s: %s; moved to %s, training from scratch", last, problem, aside.name)
    return [callback], None


def step_log(total_steps: int, lines: int = 10, metric: str = "train/loss"):
    """A callback that logs one plain line (step, `metric`, elapsed) at every 1/lines of training: readable
    job logs instead of a carriage-return progress bar."""
    import time

    from pytorch_lightning.callbacks import Callback

    every = max(1, total_steps // lines)

    class StepLog(Callback):
        def on_train_start(self, trainer, pl_module):
            self.started = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            step = trainer.global_step
            if step % every == 0 or step == total_steps:
                loss = trainer.callback_metrics.get(metric)
                log.info("step %d/%d, %s %s, %.1f s", step, total_steps, metric,
                         "–" if loss is None else f"{float(loss):.4g}", time.perf_counter() - self.started)

    return StepLog()


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int, final_factor: float = 0.0) -> dict:
    """Lightning's `lr_scheduler` entry, stepped every batch: DINO's `cosine_scheduler` (which TEMI uses) as a
    factor of the base rate: linear from 0 to 1 over `warmup_steps` (np.linspace(0, 1, warmup_steps)), then
    cosine from 1 to `final_factor` at `total_steps` (1.0: constant after warm-up)."""
    import torch

    total = max(1, total_steps)
    warmup = min(warmup_steps, total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup - 1)
        progress = (step - warmup) / max(1, total - warmup)
        return final_factor + 0.5 * (1 - final_factor) * (1 + math.cos(math.pi * progress))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}


def cosine_value(start: float, end: float, progress: float) -> float:
    """DINO's `cosine_scheduler` without warm-up at `progress` in [0, 1]: from `start` to `end`."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def clip_each_gradient(parameters, max_norm: float) -> None:
    """DINO's `utils.clip_gradients`: each parameter's gradient scaled to norm `max_norm` when larger (per
    parameter, unlike torch's clip_grad_norm_ over all of them; 1e-6 in the denominator as there)."""
    import torch

    with torch.no_grad():
        for parameter in parameters:
            if parameter.grad is not None:
                coefficient = max_norm / (parameter.grad.norm(2) + 1e-6)
                if coefficient < 1:
                    parameter.grad.mul_(coefficient)
