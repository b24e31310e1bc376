"""The self-distillation detector with shifted negatives: its loss and score against formulas worked out by
hand, the shifting transformations, exact resumption and its one-line errors."""

import math

import numpy as np
import pytest
import torch

from lightning_modules.data.builders import SHIFTS, ShiftedImages, permute_quadrants, shifted
from lightning_modules.data.base import DatasetSplit
from lightning_modules.ood.self_distillation import (SelfDistillation, SelfDistillationModule,
                                                     exp_similarity_scores, self_distillation_loss)


def test_uniform_logits_give_log_k_for_every_term():
    """All logits equal: every positive CE is log K and every negative term (1/K) sum -log(1/K) = log K, so the
    loss is 3 (the official crop sets) x (2 log K + 2 w log K) / 4 = 1.5 (1 + w) log K; `loss_scale` = 2 gives
    (1 + w) log K."""
    k = 7
    zeros = torch.zeros(3, k)
    for weight in (1.0, 0.5):
        loss = self_distillation_loss([zeros, zeros], [zeros, zeros], torch.zeros(5, k), torch.zeros(1, k),
                                      student_temp=0.1, teacher_temp=0.04, negative_weight=weight)
        assert loss.item() == pytest.approx(1.5 * (1 + weight) * math.log(k), rel=1e-6)
        halved = self_distillation_loss([zeros, zeros], [zeros, zeros], torch.zeros(5, k), torch.zeros(1, k),
                                        student_temp=0.1, teacher_temp=0.04, negative_weight=weight, loss_scale=2.0)
        assert halved.item() == pytest.approx((1 + weight) * math.log(k), rel=1e-6)


def test_loss_matches_the_formula_on_an_uneven_case():
    """Two classes, one sample per view, one negative, worked through with numpy: teacher q = softmax((t - c) /
    tau_t), student log p = log_softmax(s / tau_s); terms CE(q_a, p_b), CE(q_b, p_a) and twice the negative's
    mean -log p; loss = 3 x sum / 4 (main_train.py: len(crops_freq_student) = 3 crop sets)."""
    student_a, student_b, negative = np.array([0.3, -0.2]), np.array([1.0, 0.1]), np.array([0.5, -0.5])
    teacher_a, teacher_b, centre = np.array([0.2, 0.0]), np.array([-0.1, 0.4]), np.array([0.05, -0.05])
    tau_s, tau_t = 0.1, 0.04

    def log_softmax(v):
        v = v - v.max()
        return v - np.log(np.exp(v).sum())

    q_a, q_b = np.exp(log_softmax((teacher_a - centre) / tau_t)), np.exp(log_softmax((teacher_b - centre) / tau_t))
    ce_ab, ce_ba = -(q_a * log_softmax(student_b / tau_s)).sum(), -(q_b * log_softmax(student_a / tau_s)).sum()
    negative_term = -log_softmax(negative / tau_s).mean()
    expected = 3 * (ce_ab + ce_ba + 2 * negative_term) / 4

    as_tensor = lambda v: torch.tensor(v[None], dtype=torch.float64)  # noqa: E731
    loss = self_distillation_loss([as_tensor(student_a), as_tensor(student_b)],
                                  [as_tensor(teacher_a), as_tensor(teacher_b)], as_tensor(negative),
                                  as_tensor(centre), tau_s, tau_t)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_a_constant_centre_does_not_change_the_teacher_targets():
    """Centring subtracts one vector from every teacher output: equal entries shift all logits alike."""
    rng = np.random.default_rng(0)
    views = [torch.tensor(rng.standard_normal((4, 5))) for _ in range(2)]
    negatives = torch.tensor(rng.standard_normal((3, 5)))
    plain = self_distillation_loss(views, views, negatives, torch.zeros(1, 5), 0.1, 0.04)
    shifted_centre = self_distillation_loss(views, views, negatives, torch.full((1, 5), 3.0), 0.1, 0.04)
    assert plain.item() == pytest.approx(shifted_centre.item(), rel=1e-12)


def test_exp_similarity_score_matches_a_brute_force_sum_with_ties():
    """mean_j exp((cos - 0.1) / T) over every training row; with `neighbours`, over the k most similar (two training
    rows tie exactly: either choice gives the same mean)."""
    train = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]]), dim=1)
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=1)
    cos = (queries @ train.T).double().numpy()
    expected_all = np.exp((cos - 0.1) / 0.04).mean(1)
    np.testing.assert_allclose(exp_similarity_scores(queries, train), expected_all, rtol=1e-12)
    expected_top2 = np.sort(np.exp((cos - 0.1) / 0.04), axis=1)[:, -2:].mean(1)
    np.testing.assert_allclose(exp_similarity_scores(queries, train, neighbours=2), expected_top2, rtol=1e-12)


def test_shifting_transformations_on_a_known_image():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(SHIFTS["rotate90"](image, rng)[0], np.rot90(image[0]))
    np.testing.assert_array_equal(SHIFTS["rotate180"](image, rng)[0], image[0, ::-1, ::-1])
    np.testing.assert_array_equal(SHIFTS["flip-vertical"](image, rng)[0], image[0, ::-1])
    swapped = permute_quadrants(image, (3, 2, 1, 0))  # top-left <- bottom-right, ...
    np.testing.assert_array_equal(swapped[0, :2, :2], image[0, 2:, 2:])
    np.testing.assert_array_equal(swapped[0, 2:, 2:], image[0, :2, :2])
    for seed in range(20):  # a random variant is never the identity, and keeps every pixel value
        for name in ("rotations", "permute-patches"):
            out = SHIFTS[name](image, np.random.default_rng(seed))
            assert not np.array_equal(out, image)
            np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(image.ravel()))


class _Lazy:
    """A lazy image sequence like ImageFiles (items, subset, fingerprint)."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]

    def fingerprint(self):
        return "lazy"


def test_lazy_and_in_memory_images_are_shifted_alike():
    images = np.random.default_rng(1).random((6, 1, 4, 4)).astype(np.float32)
    labels = np.arange(6)
    in_memory = shifted(DatasetSplit(images, labels, [str(i) for i in range(6)]), "rotations", seed=3)
    lazy = shifted(DatasetSplit(_Lazy(images), labels, [str(i) for i in range(6)]), "rotations", seed=3)
    assert isinstance(lazy.images, ShiftedImages) and in_memory.derivation["shift"] == {"name": "rotations", "seed": 3}
    for i in range(6):
        np.testing.assert_array_equal(lazy.images[i], in_memory.images[i])
    np.testing.assert_array_equal(lazy.images.subset([4, 1])[0], in_memory.images[4])


def test_unknown_shift_and_non_square_rotation_fail_in_one_line():
    data = DatasetSplit(np.zeros((2, 1, 4, 6), dtype=np.float32), np.zeros(2), ["a"])
    with pytest.raises(ValueError, match="allowed: rotate90"):
        shifted(data, "rotate45")
    with pytest.raises(ValueError, match="needs square images"):
        shifted(data, "rotations")


def _data(seed=0, n=60, dims=6):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dims)).astype(np.float32) + 3
    return x, -x[: n // 2]


SMALL = {"epochs": 4, "batch_size": 16, "out_dim": 16, "head_hidden_dim": 8, "projector_hidden_dim": 8,
         "bottleneck_dim": 4, "view_neighbours": 3}


def test_untrained_projector_is_the_identity_and_training_separates_negatives():
    x, negatives = _data()
    module = SelfDistillationModule(x.shape[1], epochs=1, out_dim=8)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(module.teacher_features(x).numpy(), unit, rtol=1e-6)
    model = SelfDistillation(**SMALL).fit(x, negatives=negatives)
    assert np.isfinite(model.train_loss_)
    assert model.score(x).mean() > model.score(negatives).mean()


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    x, negatives = _data(1)
    uninterrupted = SelfDistillation(**SMALL, seed=2).fit(x, negatives=negatives)

    def crash_at_epoch_3(self):
        if self.current_epoch == 2:
            raise RuntimeError("killed")

    monkeypatch.setattr(SelfDistillationModule, "on_train_epoch_end", crash_at_epoch_3, raising=False)
    with pytest.raises(RuntimeError, match="killed"):
        SelfDistillation(**SMALL, seed=2, checkpoint_dir=tmp_path).fit(x, negatives=negatives)
    assert (tmp_path / "last.ckpt").exists()
    monkeypatch.undo()
    resumed = SelfDistillation(**SMALL, seed=2, checkpoint_dir=tmp_path).fit(x, negatives=negatives)
    np.testing.assert_array_equal(resumed.score(x), uninterrupted.score(x))


@pytest.mark.parametrize("negatives, message", [(None, "selfdistill needs negatives"),
                                                (np.zeros((4, 3), np.float32), "negatives have 3 dims")])
def test_bad_negatives_fail_in_one_line(negatives, message):
    x, _ = _data()
    with pytest.raises(ValueError, match=message):
        SelfDistillation(**SMALL).fit(x, negatives=negatives)
