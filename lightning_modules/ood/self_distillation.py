"""`selfdistill-<negatives>`: self-distillation of the ID training set contrasted with shifted negatives
(Rafiee, Gholamipoorfard, Adaloglou et al., ICANN 2022, arXiv 2201.06378), on frozen embeddings.

Follows nimaous/SSLSDN-Anomaly-Detection: `dino_loss.py` (`DINOLossNegCon`), `eval_function.py`
(`OOD_classifier`) and the README's CIFAR-10 command (teacher temperature 0.04 -> 0.01 over all epochs, student
0.1, out_dim 4096, norm_last_layer false). What differs here, because the backbone is frozen:

- the trained network is a residual projector on the frozen embedding, f(x) = x + W2 GELU(W1 x) with W2 = 0 at
  the start (so training starts from the backbone's own features, as fine-tuning a pretrained ViT does), followed
  by DINO's projection head (3-layer MLP, L2-normalised bottleneck, weight-normalised last layer);
- the two positive views of an ID sample are the sample and one of its k nearest ID neighbours (TEMI's pairs;
  image crops do not exist for frozen features);
- the negatives are embeddings of shifted images (a dataset with `shift: rotations`, `permute-patches`, ...),
  embedded by the same backbone.

Loss (DINOLossNegCon with one negative set): with teacher probabilities q = softmax((t - c) / tau_t), c the EMA
centre of the teacher outputs, and student log-probabilities log p = log_softmax(s / tau_s),
    L = scale / n_terms * [ sum_{t != s} mean_b CE(q_t, p_s) + sum_t w * mean_n (1/K) sum_k -log p_n(k) ],
over the two ID views t, s, the negatives n and K = out_dim: positives are distilled across views, negatives
pushed to the uniform distribution (w = `negative_weight`, 1 with one negative set as here, 0.5 in the official
code when ID-shifted and auxiliary-shifted sets are combined). `loss_scale` = 3: the official multiplies every
term by its number of crop sets, always 3 there (positives, ID-shifted and auxiliary negatives).

Optimisation follows main_train.py and the README's run: AdamW without decay on biases and 1-D parameters, peak
lr = `lr` x batch / 256 after a linear warm-up from 0 over `warmup_epochs`, cosine down to `min_lr`; weight decay
on a cosine from `weight_decay` to `weight_decay_end`; every parameter's gradient clipped to norm `clip_grad`
(DINO's `clip_gradients`, per parameter); the last layer frozen for `freeze_last_layer` epochs; the teacher an
EMA of the student with momentum on a cosine from `teacher_momentum` to 1.

Centre (`centre_rows`): `views` (default, DINO's update_center) averages every teacher output of the batch; the
official `DINOLoss.forward` averages `teacher_output[:crops_freq_teacher[0]]`, the first two *rows* (two samples
of the first view; DINO means the two views) -- `first-samples` reproduces that, and config/paper.yaml uses it.

Score (`OOD_classifier`, k = -1, T = 0.04): the teacher's features f(x), L2-normalised, against those of every ID
training sample: score(x) = mean_j exp((cos(f(x), f(x_j)) - 0.1) / T); `score_neighbours` = k averages the k
most similar only. Higher = more in-distribution.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lightning_modules.ood.base import OODScorer
from lightning_modules.search.pairs import NeighbourPairsAndNegatives, pairs_loader, unit_rows
from lightning_modules.core.seeded_data import SeededDataModule


def self_distillation_loss(student_views: list[torch.Tensor], teacher_views: list[torch.Tensor],
                           student_negatives: torch.Tensor, centre: torch.Tensor, student_temp: float,
                           teacher_temp: float, negative_weight: float = 1.0, loss_scale: float = 3.0) -> torch.Tensor:
    """The loss above: `student_views`, `teacher_views`: the ID views' (B, K) logits; `student_negatives`:
    (M, K) logits of the negatives; `centre`: (1, K)."""
    teacher_probs = [F.softmax((view - centre) / teacher_temp, dim=-1).detach() for view in teacher_views]
    student_log = [F.log_softmax(view / student_temp, dim=-1) for view in student_views]
    negative_log = F.log_softmax(student_negatives / student_temp, dim=-1)
    terms = []
    for t, q in enumerate(teacher_probs):
        terms += [-(q * log_p).sum(-1).mean() for s, log_p in enumerate(student_log) if s != t]
        terms.append(negative_weight * -negative_log.mean(-1).mean())
    return loss_scale * torch.stack(terms).sum() / len(terms)


def exp_similarity_scores(queries: torch.Tensor, train: torch.Tensor, temperature: float = 0.04,
                          shift: float = 0.1, neighbours: int | None = None, batch_size: int = 1000) -> np.ndarray:
    """mean_j exp((cos(q, x_j) - shift) / T) over all (or the `neighbours` most similar) training rows; both
    inputs L2-normalised (Q, d) and (N, d). float64, chunked over the queries."""
    out = []
    for start in range(0, len(queries), batch_size):
        similarity = queries[start:start + batch_size].double() @ train.double().T
        if neighbours:
            similarity = similarity.topk(min(neighbours, similarity.shape[1]), dim=1).values
        out.append(((similarity - shift) / temperature).exp().mean(1))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0)


CENTRE_ROWS = ("views", "first-samples")


class ResidualProjector(nn.Module):
    """f(x) = x + W2 GELU(W1 x), W2 = 0 at the start: the identity on the frozen features until trained."""

    def __init__(self, dims: int, hidden_dim: int):
        super().__init__()
        self.inner = nn.Linear(dims, hidden_dim)
        self.outer = nn.Linear(hidden_dim, dims)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.outer(F.gelu(self.inner(x)))


class DINOHead(nn.Module):
    """DINO's projection head: Linear-GELU-Linear-GELU-Linear, L2-normalise, weight-normalised Linear (no bias)."""

    def __init__(self, dims: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 norm_last_layer: bool = False):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dims, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, bottleneck_dim))
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad = not norm_last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))


class Student(nn.Module):
    def __init__(self, dims: int, out_dim: int, projector_hidden_dim: int, head_hidden_dim: int, bottleneck_dim: int,
                 norm_last_layer: bool):
        super().__init__()
        self.projector = ResidualProjector(dims, projector_hidden_dim)
        self.head = DINOHead(dims, out_dim, head_hidden_dim, bottleneck_dim, norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.projector(x))


class SelfDistillationModule(pl.LightningModule):
    def __init__(self, dims: int, epochs: int, out_dim: int = 4096, projector_hidden_dim: int = 512,
                 head_hidden_dim: int = 2048, bottleneck_dim: int = 256, norm_last_layer: bool = False,
                 student_temp: float = 0.1, teacher_temp: float = 0.01, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: int | None = None, center_momentum: float = 0.9,
                 teacher_momentum: float = 0.996, negative_weight: float = 1.0, batch_size: int = 128,
                 lr: float = 4e-3, min_lr: float = 1e-6, warmup_epochs: int = 30, weight_decay: float = 0.04,
                 weight_decay_end: float = 0.4, clip_grad: float = 3.0, freeze_last_layer: int = 1,
                 loss_scale: float = 3.0, centre_rows: str = "views"):
        super().__init__()
        if centre_rows not in CENTRE_ROWS:
            raise ValueError(f"ood.self_distillation.centre_rows = '{centre_rows}'; allowed: {', '.join(CENTRE_ROWS)}")
        self.save_hyperparameters()
        self.student = Student(dims, out_dim, projector_hidden_dim, head_hidden_dim, bottleneck_dim, norm_last_layer)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.register_buffer("centre", torch.zeros(1, out_dim))

    def teacher_temperature(self) -> float:
        """Linear from `warmup_teacher_temp` to `teacher_temp` over the warm-up epochs (None: all epochs)."""
        hp = self.hparams
        warmup = hp.epochs if hp.warmup_teacher_temp_epochs is None else hp.warmup_teacher_temp_epochs
        if self.current_epoch >= warmup or warmup <= 1:
            return hp.teacher_temp
        return hp.warmup_teacher_temp + (hp.teacher_temp - hp.warmup_teacher_temp) * self.current_epoch / (warmup - 1)

    def training_step(self, batch, batch_idx):
        anchors, neighbours, negatives = batch
        hp = self.hparams
        student = self.student(torch.cat([anchors, neighbours, negatives]))
        with torch.no_grad():
            teacher = self.teacher(torch.cat([anchors, neighbours]))
        views = list(student[: 2 * len(anchors)].chunk(2))
        loss = self_distillation_loss(views, list(teacher.chunk(2)), student[2 * len(anchors):], self.centre,
                                      hp.student_temp, self.teacher_temperature(), hp.negative_weight, hp.loss_scale)
        centred = teacher if hp.centre_rows == "views" else teacher[:2]
        with torch.no_grad():  # DINO's update_center, after the loss used the old centre
            self.centre.mul_(hp.center_momentum).add_(centred.mean(0, keepdim=True), alpha=1 - hp.center_momentum)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # DINO's cosine teacher momentum schedule, from `teacher_momentum` to 1 over training, at the index of the
        # step just taken (main_train.py: momentum_schedule[it]; Lightning has counted the step before this hook)
        total = max(1, self.trainer.estimated_stepping_batches)
        step = self.global_step - 1
        momentum = 1 - (1 - self.hparams.teacher_momentum) * (math.cos(math.pi * step / total) + 1) / 2
        with torch.no_grad():
            torch._foreach_lerp_(list(self.teacher.parameters()), list(self.student.parameters()), 1 - momentum)

    def on_before_optimizer_step(self, optimizer) -> None:
        # main_train.py's order: clip every gradient, cancel the last layer's, step with this step's weight decay
        from lightning_modules.core.training import clip_each_gradient, cosine_value

        hp = self.hparams
        if hp.clip_grad:
            clip_each_gradient(self.student.parameters(), hp.clip_grad)
        if self.current_epoch < hp.freeze_last_layer:
            for parameter in self.student.head.last.parameters():
                parameter.grad = None
        total = max(1, self.trainer.estimated_stepping_batches)
        optimizer.param_groups[0]["weight_decay"] = cosine_value(hp.weight_decay, hp.weight_decay_end,
                                                                 self.global_step / total)

    def configure_optimizers(self):
        from lightning_modules.core.training import warmup_cosine

        hp = self.hparams
        decayed = [p for n, p in self.student.named_parameters() if p.requires_grad and p.ndim > 1]
        not_decayed = [p for n, p in self.student.named_parameters() if p.requires_grad and p.ndim <= 1]
        peak = hp.lr * hp.batch_size / 256  # DINO's linear scaling rule
        optimizer = torch.optim.AdamW([{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}],
                                      lr=peak, weight_decay=hp.weight_decay)
        total = self.trainer.estimated_stepping_batches
        warmup = hp.warmup_epochs * total // max(1, self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": warmup_cosine(optimizer, total, warmup, hp.min_lr / peak)}

    @torch.no_grad()
    def teacher_features(self, x: np.ndarray, batch_size: int = 4096) -> torch.Tensor:
        """(N, d) -> (N, d) L2-normalised teacher projector features, chunk by chunk."""
        self.eval()
        chunks = [F.normalize(self.teacher.projector(unit_rows(x[start:start + batch_size], self.device)), dim=-1).cpu()
                  for start in range(0, len(x), batch_size)]
        return torch.cat(chunks)


class PairsDataModule(SeededDataModule):
    def __init__(self, embeddings, neighbours, negatives, batch_size: int, seed: int):
        # two checkpointed streams: batch order, and the neighbour and negative picks
        super().__init__(seed, streams=("order", "picks"))
        self.embeddings, self.neighbours, self.negatives = embeddings, neighbours, negatives
        self.batch_size = min(batch_size, len(embeddings))

    def train_dataloader(self) -> DataLoader:
        pairs = NeighbourPairsAndNegatives(self.embeddings, self.neighbours, self.negatives, self.generators["picks"])
        return pairs_loader(pairs, self.batch_size, self.generators["order"])


class SelfDistillation(OODScorer):
    """fit(ID train embeddings, negatives=shifted embeddings) trains the projector and head; score(x) is the
    exp-similarity score of the teacher features. No labels. `view_neighbours`: the k of the kNN views."""

    name = "selfdistill"

    def __init__(self, epochs: int = 500, batch_size: int = 128, view_neighbours: int = 10,
                 score_temperature: float = 0.04, score_neighbours: int | None = None, seed: int = 0,
                 progress: bool = False, checkpoint_dir=None, **module_params):
        self.epochs, self.batch_size, self.view_neighbours = epochs, batch_size, view_neighbours
        self.score_temperature, self.score_neighbours, self.seed = score_temperature, score_neighbours, seed
        self.progress, self.checkpoint_dir, self.module_params = progress, checkpoint_dir, module_params

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, negatives: np.ndarray | None = None,
            logger=None, **context) -> "SelfDistillation":
        from lightning_modules.search.neighbours import knn_graph

        if negatives is None or not len(negatives):
            raise ValueError("selfdistill needs negatives: set ood.self_distillation.negatives to a dataset of "
                             "shifted images (e.g. `shift: rotations`)")
        if np.shape(negatives)[1] != np.shape(embeddings)[1]:
            raise ValueError(f"selfdistill: negatives have {np.shape(negatives)[1]} dims, the ID embeddings "
                             f"{np.shape(embeddings)[1]}; embed both with the same backbone")
        if not 1 <= self.view_neighbours < len(embeddings):
            raise ValueError(f"selfdistill: view_neighbours = {self.view_neighbours} needs more ID samples "
                             f"({len(embeddings)})")
        neighbours, _ = knn_graph(embeddings, self.view_neighbours, use_gpu=False)
        pl.seed_everything(self.seed, workers=True, verbose=False)
        datamodule = PairsDataModule(embeddings, neighbours, negatives, self.batch_size, self.seed)
        self.module_ = SelfDistillationModule(np.shape(embeddings)[1], self.epochs, batch_size=datamodule.batch_size,
                                              **self.module_params)
        callbacks, resume_from = [], None
        if self.checkpoint_dir is not None:
            from lightning_modules.core.training import resumable, run_identity

            identity = run_identity(self.module_, embeddings, negatives, neighbours, seed=self.seed,
                                    batch_size=self.batch_size)
            callbacks, resume_from = resumable(self.checkpoint_dir, identity, every_n_epochs=1)
        trainer = pl.Trainer(max_epochs=self.epochs, accelerator="auto", devices=1, logger=logger or False,
                             enable_checkpointing=self.checkpoint_dir is not None, enable_model_summary=False,
                             enable_progress_bar=self.progress, callbacks=callbacks, deterministic=True,
                             log_every_n_steps=1)
        trainer.fit(self.module_, datamodule=datamodule, ckpt_path=resume_from)
        self.train_loss_ = float(trainer.callback_metrics.get("train/loss", float("nan")))
        self.train_features_ = self.module_.teacher_features(embeddings)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return exp_similarity_scores(self.module_.teacher_features(x), self.train_features_, self.score_temperature,
                                     neighbours=self.score_neighbours)
