"""Reference parity: every head loss and OOD score on fixed inputs against values worked out independently of
the code under test (closed forms, scalar arithmetic, plain numpy), following the official implementations
(TEMI-official-BMVC2023, Unsupervised-Classification (SCAN), swav, OpenOOD). Each test is built so that a
changed sign, temperature, weighting or update order fails it; uneven, degenerate and tie cases included."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lightning_modules.clustering.heads.dec import dec_head_losses, student_t_logits
from lightning_modules.clustering.heads.scan import SCAN, scan_head_losses, self_label_head_losses
from lightning_modules.clustering.heads.sinkhorn import Sinkhorn, sinkhorn_targets
from lightning_modules.clustering.heads.temi import TEMI, temi_head_losses
from lightning_modules.ood import build_scorer


def tensor(values):
    return torch.tensor(values, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- TEMI


def test_temi_loss_uniform_closed_form():
    """All probabilities 1/K, prior 1/K: w = 1/K and both PMIs are (2 - 2 beta) log K."""
    K, beta = 4, 0.6
    zeros = torch.zeros(2, 3, K, dtype=torch.float64)
    got = temi_head_losses(zeros, zeros, zeros, zeros, torch.full((2, K), 1 / K, dtype=torch.float64), beta, 0.1)
    np.testing.assert_allclose(got.numpy(), -(2 - 2 * beta) * math.log(K) / K, rtol=1e-12)


def test_temi_loss_worked_by_hand():
    """Two heads, one pair, K = 2, temperature 0.5, beta 0.5. Head 0's logits are tau * log 3, so its
    probabilities are quarters; head 1 is uniform. The teacher-agreement weight is averaged over heads."""
    tau, beta, ln3 = 0.5, 0.5, math.log(3)
    student_x = tensor([[[tau * ln3, 0]], [[0, 0]]])   # head 0: (3/4, 1/4)
    student_y = tensor([[[0, 0]], [[0, 0]]])           # (1/2, 1/2)
    teacher_x = tensor([[[tau * ln3, 0]], [[0, 0]]])   # head 0: (3/4, 1/4)
    teacher_y = tensor([[[0, tau * ln3]], [[0, 0]]])   # head 0: (1/4, 3/4)
    prior = tensor([[0.8, 0.2], [0.5, 0.5]])
    weight = (3 / 8 + 1 / 2) / 2  # head 0: 3/4 * 1/4 + 1/4 * 3/4; head 1: 1/2
    forward = math.sqrt(3 / 16) / 0.8 + math.sqrt(3 / 16) / 0.2   # sum_k (s_x t_y)^beta / p_k
    backward = math.sqrt(3 / 8) / 0.8 + math.sqrt(1 / 8) / 0.2    # sum_k (s_y t_x)^beta / p_k
    expected_head0 = -weight * (math.log(forward) + math.log(backward)) / 2
    expected_head1 = -weight * math.log(2 * (1 / 4) ** beta / 0.5)  # both directions equal
    got = temi_head_losses(student_x, student_y, teacher_x, teacher_y, prior, beta, tau)
    np.testing.assert_allclose(got.numpy(), [expected_head0, expected_head1], rtol=1e-12)


def numpy_softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def test_temi_prior_is_updated_with_the_batch_before_the_loss():
    """The official `compute_weight` moves p~ with this batch's teacher probabilities, then the loss reads it."""
    torch.manual_seed(0)
    H, K, tau, beta, momentum = 2, 3, 0.1, 0.6, 0.9
    module = TEMI(in_dim=5, n_clusters=K, n_heads=H, hidden_dim=7, bottleneck_dim=4, beta=beta, temperature=tau,
                  prior_momentum=momentum).double()
    skewed = tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    module.cluster_prior.copy_(skewed)
    anchors, neighbours = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    with torch.no_grad():
        both = torch.cat([anchors, neighbours])
        student, teacher = module.student(both).numpy(), module.teacher(both).numpy()
    s, t = numpy_softmax(student / tau), numpy_softmax(teacher / tau)          # (H, 2B, K)
    updated = momentum * skewed.numpy() + (1 - momentum) * t.mean(1)           # over both members of the pairs
    s_x, s_y, t_x, t_y = s[:, :6], s[:, 6:], t[:, :6], t[:, 6:]
    weight = (t_x * t_y).sum(-1).mean(0)                                        # (B,)

    def expected(prior):
        pmi = lambda a, b: np.log((((a * b) ** beta) / prior[:, None, :]).sum(-1))  # noqa: E731
        return -(weight * (pmi(s_x, t_y) + pmi(s_y, t_x)) / 2).mean(-1)

    got = module.head_losses(anchors, neighbours).detach().numpy()
    np.testing.assert_allclose(got, expected(updated), rtol=1e-10)
    np.testing.assert_allclose(module.cluster_prior.numpy(), updated, rtol=1e-12)
    assert np.abs(expected(skewed.numpy()) - got).max() > 1e-3  # the lagged order would be told apart


def attach_trainer(module, total_steps=10, max_epochs=1, epoch=0):
    module._trainer = SimpleNamespace(estimated_stepping_batches=total_steps, max_epochs=max_epochs,
                                      current_epoch=epoch)
    configured = module.configure_optimizers()
    return configured["optimizer"], configured["lr_scheduler"]["scheduler"]


def one_step(module, anchors, neighbours, epoch=0):
    optimizer, _ = attach_trainer(module, epoch=epoch)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    loss = module.head_losses(anchors, neighbours).sum()
    loss.backward()
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in module.named_parameters()}
    module.on_after_backward()
    optimizer.step()
    return before, grads


def test_temi_last_layer_gain_is_learnt_and_decayed_like_dinos_weight_g():
    """AdamW's first step, worked by hand: p <- p (1 - lr wd) - lr g / (|g| + eps). The gain (DINO's weight_g,
    2-D) is decayed; biases are not (DINO's get_params_groups)."""
    torch.manual_seed(1)
    lr, wd = 1e-2, 0.5
    module = TEMI(in_dim=5, n_clusters=3, n_heads=2, hidden_dim=7, bottleneck_dim=4, lr=lr, weight_decay=wd,
                  batch_size=256, freeze_last_layer=0)
    before, grads = one_step(module, torch.randn(8, 5), torch.randn(8, 5))
    after = dict(module.named_parameters())
    for name, decay in [("student.last_gain", wd), ("student.last_direction", wd), ("student.second_weight", wd),
                        ("student.second_bias", 0.0), ("student.first.bias", 0.0)]:
        g = grads[name]
        assert g is not None and g.abs().max() > 0, name
        expected = before[name] * (1 - lr * decay) - lr * g / (g.abs() + 1e-8)
        torch.testing.assert_close(after[name].detach(), expected, rtol=1e-5, atol=1e-7, msg=name)
    assert not torch.equal(after["student.last_gain"].detach(), before["student.last_gain"])


def test_fixed_gain_when_norm_last_layer_and_frozen_last_layer_in_the_first_epoch():
    torch.manual_seed(2)
    fixed = TEMI(in_dim=5, n_clusters=3, n_heads=2, hidden_dim=7, bottleneck_dim=4, norm_last_layer=True,
                 freeze_last_layer=0)
    one_step(fixed, torch.randn(8, 5), torch.randn(8, 5))
    assert torch.equal(fixed.student.last_gain.detach(), torch.ones(2, 1, 3))

    for epoch, frozen in [(0, True), (1, False)]:  # TEMI's default freeze_last_layer = 1
        torch.manual_seed(3)
        module = TEMI(in_dim=5, n_clusters=3, n_heads=2, hidden_dim=7, bottleneck_dim=4)
        before, _ = one_step(module, torch.randn(8, 5), torch.randn(8, 5), epoch=epoch)
        for name in ("student.last_direction", "student.last_gain"):
            unchanged = torch.equal(dict(module.named_parameters())[name].detach(), before[name])
            assert unchanged == frozen, (epoch, name)
        assert not torch.equal(module.student.second_weight.detach(), before["student.second_weight"])


def test_learning_rate_warms_up_then_stays_at_lr_by_default():
    """DINO's cosine_scheduler with TEMI's README settings (min_lr = lr): linspace(0, lr, warm-up steps), then
    constant; with min_lr, cosine from lr to min_lr. Both scaled by batch_size / 256."""
    def rates(**params):
        module = TEMI(in_dim=4, n_clusters=3, n_heads=1, hidden_dim=5, bottleneck_dim=3, batch_size=512, **params)
        module._trainer = SimpleNamespace(estimated_stepping_batches=100, max_epochs=10, current_epoch=0)
        configured = module.configure_optimizers()
        optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
        seen = []
        for _ in range(100):
            seen.append([group["lr"] for group in optimizer.param_groups])
            optimizer.step()
            scheduler.step()
        return np.array(seen)

    constant = rates(lr=1e-3, warmup_epochs=2)  # 20 warm-up steps; base 1e-3 * 512 / 256
    np.testing.assert_allclose(constant[:20, 0], np.linspace(0, 2e-3, 20), rtol=1e-12)
    np.testing.assert_allclose(constant[20:], 2e-3, rtol=1e-12)
    np.testing.assert_allclose(constant[:, 0], constant[:, 1])  # decayed and non-decayed groups alike
    cosine = rates(lr=1e-3, warmup_epochs=2, min_lr=1e-4)
    i = np.arange(80)
    np.testing.assert_allclose(cosine[20:, 0], 2e-4 + 0.5 * (2e-3 - 2e-4) * (1 + np.cos(np.pi * i / 80)), rtol=1e-12)


def test_weight_decay_groups():
    module = TEMI(in_dim=4, n_clusters=3, n_heads=2, hidden_dim=5, bottleneck_dim=3, weight_decay=0.04)
    optimizer, _ = attach_trainer(module)
    names = {id(p): name for name, p in module.named_parameters()}
    decayed, exempt = ({names[id(p)] for p in group["params"]} for group in optimizer.param_groups)
    assert decayed == {"student.first.weight", "student.second_weight", "student.last_direction", "student.last_gain"}
    assert exempt == {"student.first.bias", "student.second_bias"}  # the teacher is not optimised at all
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.04, 0.0]


# ----------------------------------------------------------------------------------------------- SCAN


def test_scan_loss_uniform_closed_form():
    """Uniform predictions: consistency -log(K * 1/K^2) = log K, entropy log K: (1 - w) log K."""
    zeros = torch.zeros(1, 4, 5, dtype=torch.float64)
    assert scan_head_losses(zeros, zeros, entropy_weight=5.0).item() == pytest.approx(-4 * math.log(5), rel=1e-12)


def test_scan_loss_degenerate_pair_and_empty_cluster_as_the_official_code():
    """Disjoint confident predictions: <p, p'> ~ 2e-87, so -log is nn.BCELoss's cap of 100; the empty cluster's
    mean probability is clamped at 1e-8, adding 1e-8 * log(1e8) to the entropy."""
    logits_x, logits_y = tensor([[[0.0, -200.0]]]), tensor([[[-200.0, 0.0]]])
    got = scan_head_losses(logits_x, logits_y, entropy_weight=2.0).item()
    assert got == pytest.approx(100 - 2.0 * 1e-8 * math.log(1e8), rel=1e-12)


def test_self_label_loss_worked_by_hand():
    """Threshold 0.9: samples 0 and 1 confident in cluster 0, sample 2 in cluster 1, sample 3 not confident.
    Class-balanced weights n / count: 3/2 for cluster 0, 3 for cluster 1 (weighted mean cross-entropy)."""
    logits = tensor([[[5.0, 0.0], [4.0, 0.0], [0.0, 3.0], [1.0, 0.0]]])
    nll = lambda margin: math.log1p(math.exp(-margin))  # noqa: E731  -log sigmoid(margin)
    expected = (1.5 * nll(5) + 1.5 * nll(4) + 3 * nll(3)) / (1.5 + 1.5 + 3)
    assert self_label_head_losses(logits, threshold=0.9).item() == pytest.approx(expected, rel=1e-12)
    assert self_label_head_losses(tensor([[[0.1, 0.0]]]), threshold=0.9).item() == 0  # nobody confident


def test_scan_never_selects_a_head_by_its_self_labelling_loss():
    """Head 0 had no confident sample (self-labelling loss 0) but the worse SCAN loss: head 1 is kept."""
    module = SCAN(in_dim=4, n_clusters=3, n_heads=2, hidden_dim=5, bottleneck_dim=3, self_label_epochs=2)
    module.scan_head_loss.copy_(tensor([-1.0, -2.0]))
    module.last_epoch_head_loss.copy_(tensor([0.0, 0.7]))
    assert module.selected_head() == 1


def test_scan_self_labelling_keeps_the_head_chosen_by_the_scan_loss_and_trains_only_it():
    from lightning_modules.clustering.heads.estimator import SCANClustering

    rng = np.random.default_rng(0)
    x = np.concatenate([c + rng.normal(0, 0.3, (40, 6)) for c in rng.normal(0, 4, (3, 6))]).astype(np.float32)
    neighbours = np.stack([np.roll(np.arange(len(x)), -s) for s in (1, 2, 3)], 1)
    kwargs = {"epochs": 3, "batch_size": 24, "n_heads": 3, "hidden_dim": 16, "bottleneck_dim": 8, "progress": False}
    plain = SCANClustering(3, seed=0, **kwargs).fit(x, neighbours)
    labelled = SCANClustering(3, seed=0, self_label_epochs=2, confidence_threshold=0.5, **kwargs).fit(x, neighbours)
    # the first 3 epochs are the same run (constant rate after warm-up), so the choice is the same
    np.testing.assert_allclose(labelled.head_losses_, plain.head_losses_, rtol=1e-6)
    assert labelled.selected_head_ == plain.selected_head_ == int(np.argmin(plain.head_losses_))
    assert not np.array_equal(labelled.probs_, plain.probs_)  # self-labelling did train the kept head


# ------------------------------------------------------------------------------------ Sinkhorn and DEC


def swav_sinkhorn(scores, epsilon, iterations):
    """swav's `distributed_sinkhorn` on one process, in numpy: Q is K x B."""
    q = np.exp(scores / epsilon).T
    q /= q.sum()
    n_clusters, n_samples = q.shape
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= n_clusters
        q /= q.sum(axis=0, keepdims=True)
        q /= n_samples
    return (q * n_samples).T


def test_sinkhorn_matches_swavs_iterations_and_swapped_loss():
    rng = np.random.default_rng(4)
    scores_x, scores_y = rng.uniform(-1, 1, (6, 3)), rng.uniform(-1, 1, (6, 3))
    for iterations in (1, 3):
        got = sinkhorn_targets(tensor(scores_x[None]), epsilon=0.05, iterations=iterations)[0].double().numpy()
        np.testing.assert_allclose(got, swav_sinkhorn(scores_x, 0.05, iterations), rtol=1e-5)

    class FixedScores(torch.nn.Module):  # the network's cosine scores for the anchors, then their neighbours
        def forward(self, both):
            return tensor(np.concatenate([scores_x, scores_y])[None])

    module = Sinkhorn(in_dim=4, n_clusters=3, n_heads=1, temperature=0.1)
    module.student = FixedScores()
    q_x, q_y = swav_sinkhorn(scores_x, 0.05, 3), swav_sinkhorn(scores_y, 0.05, 3)
    log_p = lambda s: np.log(numpy_softmax(s / 0.1))  # noqa: E731
    expected = -((q_y * log_p(scores_x)).sum(-1) + (q_x * log_p(scores_y)).sum(-1)).mean() / 2
    got = module.head_losses(torch.zeros(6, 4), torch.zeros(6, 4)).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_dec_loss_worked_by_hand():
    """Points 0, 1, 3 on a line, centroids 0 and 2, alpha 1: q_ik ∝ 1 / (1 + d^2)."""
    kernel = [[1, 1 / 5], [1 / 2, 1 / 2], [1 / 10, 1 / 2]]
    q = [[v / sum(row) for v in row] for row in kernel]
    f = [sum(row[k] for row in q) for k in range(2)]
    p = [[row[k] ** 2 / f[k] for k in range(2)] for row in q]
    p = [[v / sum(row) for v in row] for row in p]
    kl = sum(p[i][k] * math.log(p[i][k] / q[i][k]) for i in range(3) for k in range(2)) / 3
    prior = sum(fk / 3 * math.log(fk / 3 * 2) for fk in f)
    logits = student_t_logits(tensor([[0.0], [1.0], [3.0]]), tensor([[[0.0], [2.0]]]), alpha=1.0)
    assert dec_head_losses(logits, prior_weight=0.5).item() == pytest.approx(kl + 0.5 * prior, rel=1e-12)


# --------------------------------------------------------------------------------------------- OOD


@pytest.fixture(scope="module")
def uneven_classes():
    """400, 100 and 20 samples; differently shaped classes, so that size-weighted pooling matters."""
    rng = np.random.default_rng(5)
    sizes, dims = [400, 100, 20], 5
    labels = np.repeat(np.arange(3), sizes)
    centres = rng.normal(0, 3, (3, dims))
    scales = rng.uniform(0.2, 3, (3, dims))
    train = centres[labels] + rng.normal(0, 1, (len(labels), dims)) * scales[labels]
    queries = rng.normal(0, 4, (30, dims))
    return train.astype(np.float32), labels, queries.astype(np.float32)


def pooled_by_loops(train, labels):
    x = train.astype(np.float64)
    means = {c: x[labels == c].mean(0) for c in np.unique(labels)}
    scatter = sum(np.outer(row - means[c], row - means[c]) for row, c in zip(x, labels))
    return means, scatter / len(x)


def squared_distance(query, mean, inverse):
    d = query.astype(np.float64) - mean
    return d @ inverse @ d


@pytest.mark.parametrize("name", ["mahalanobis", "cluster-mahalanobis"])
def test_mahalanobis_pools_class_centred_samples(uneven_classes, name, monkeypatch):
    import lightning_modules.ood.mahalanobis as mahalanobis

    monkeypatch.setattr(mahalanobis, "CHUNK_ROWS", 7)  # statistics accumulated over many uneven chunks
    monkeypatch.setattr(mahalanobis, "SCORE_CHUNK_ROWS", 4)  # queries scored by uneven chunks
    train, labels, queries = uneven_classes
    means, covariance = pooled_by_loops(train, labels)
    inverse = np.linalg.inv(covariance)
    expected = [-min(squared_distance(q, m, inverse) for m in means.values()) for q in queries]
    got = build_scorer(name).fit(train, labels).score(queries)
    np.testing.assert_allclose(got, expected, rtol=1e-8)
    equal_weights = np.mean([np.cov(train[labels == c].T, bias=True) for c in range(3)], axis=0)
    wrong = [-min(squared_distance(q, m, np.linalg.inv(equal_weights)) for m in means.values()) for q in queries]
    assert np.abs(np.array(wrong) - expected).max() > 1e-2 * np.abs(expected).max()


def test_pooled_covariance_far_from_the_origin_and_with_a_constant_feature(uneven_classes):
    """Features offset by 1e8 (|x|² / variance ~ 1e16): sum x x^T - n mu mu^T would keep no digit; the one pass
    over rows shifted by a class member keeps the covariance to float64 precision, and a constant feature's
    row and column exactly 0 (the pseudo-inverse's null space)."""
    from lightning_modules.ood.mahalanobis import class_means_and_pooled_covariance

    train, labels, _ = uneven_classes
    offset = np.hstack([train.astype(np.float64) + 1e8, np.full((len(train), 1), 3.0)])
    means, covariance = pooled_by_loops(train, labels)
    _, got_means, got = class_means_and_pooled_covariance(offset, labels)
    np.testing.assert_allclose(got[:-1, :-1], covariance, rtol=1e-9, atol=1e-9 * np.abs(covariance).max())
    np.testing.assert_allclose(got_means[:, :-1] - 1e8, np.stack(list(means.values())), atol=1e-7)
    assert (got[-1] == 0).all() and (got[:, -1] == 0).all()


def test_relative_mahalanobis_on_uneven_classes(uneven_classes):
    train, labels, queries = uneven_classes
    means, covariance = pooled_by_loops(train, labels)
    background_mean, background = pooled_by_loops(train, np.zeros(len(train), dtype=int))
    inverse, background_inverse = np.linalg.inv(covariance), np.linalg.inv(background)
    expected = [-min(squared_distance(q, m, inverse) - squared_distance(q, background_mean[0], background_inverse)
                     for m in means.values()) for q in queries]
    got = build_scorer("relative-mahalanobis").fit(train, labels).score(queries)
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("relative", [False, True])
def test_mahalanobis_pp_is_the_score_on_unit_rows(uneven_classes, relative, monkeypatch):
    """Mahalanobis++ (mueller-mp/maha-norm mdsn / rmdsn postprocessors): training rows divided by their norm
    before the class means and the pooled covariance, queries divided by theirs before scoring — worked here
    with loops over the normalised rows."""
    import lightning_modules.ood.mahalanobis as mahalanobis

    monkeypatch.setattr(mahalanobis, "CHUNK_ROWS", 7)
    monkeypatch.setattr(mahalanobis, "SCORE_CHUNK_ROWS", 4)
    train, labels, queries = uneven_classes
    unit = train.astype(np.float64) / np.linalg.norm(train.astype(np.float64), axis=1, keepdims=True)
    unit_queries = queries.astype(np.float64) / np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)
    means, covariance = pooled_by_loops(unit, labels)
    inverse = np.linalg.pinv(covariance, hermitian=True)  # unit rows: the covariance is near singular
    distances = [[squared_distance(q, m, inverse) for m in means.values()] for q in unit_queries]
    if relative:
        background_mean, background = pooled_by_loops(unit, np.zeros(len(unit), dtype=int))
        background_inverse = np.linalg.pinv(background, hermitian=True)
        distances = [[d - squared_distance(q, background_mean[0], background_inverse) for d in row]
                     for q, row in zip(unit_queries, distances)]
    expected = [-min(row) for row in distances]
    name = "relative-mahalanobis-pp" if relative else "mahalanobis-pp"
    got = build_scorer(name).fit(train, labels).score(queries)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    # scaling any row leaves it unchanged; the plain score on the raw rows differs
    scaled = build_scorer(name).fit(train * np.linspace(0.5, 4, len(train))[:, None].astype(np.float32), labels)
    np.testing.assert_allclose(scaled.score(queries * 3), got, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    plain = build_scorer(name.removesuffix("-pp")).fit(train, labels).score(queries)
    assert np.abs(plain - got).max() > 1e-2 * np.abs(got).max()


def test_mahalanobis_pp_keeps_a_zero_row_finite():
    """The official code divides by the norm alone (a zero row is NaN); NORM_EPS keeps it at the origin."""
    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    scores = build_scorer("mahalanobis-pp").fit(train, np.array([0, 0, 1, 1])).score(np.zeros((1, 2), np.float32))
    assert np.isfinite(scores).all()


def test_mahalanobis_with_a_one_sample_class():
    """A class of one sample adds its mean and nothing to the pooled scatter."""
    train = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [10, 10]], dtype=np.float32)
    labels = np.array([0, 0, 0, 0, 1])
    covariance = np.eye(2) * 4 / 5  # class 0: four corners around (1, 1), each coordinate deviates by ±1
    query = np.array([[9.0, 10.0]], dtype=np.float32)
    expected = -min((query[0] - [1, 1]) @ np.linalg.inv(covariance) @ (query[0] - [1, 1]),
                    (query[0] - [10, 10]) @ np.linalg.inv(covariance) @ (query[0] - [10, 10]))
    assert build_scorer("mahalanobis").fit(train, labels).score(query)[0] == pytest.approx(expected, rel=1e-12)


def test_knn_scores_with_ties_and_an_exact_match():
    """Cosine similarity to the k-th nearest training embedding; duplicated training points tie."""
    train = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    queries = np.array([[1, 0], [0, 2]], dtype=np.float32)
    s = math.sqrt(0.5)
    np.testing.assert_allclose(build_scorer("knn1").fit(train).score(queries), [1, 1], rtol=1e-6)
    np.testing.assert_allclose(build_scorer("knn1", k=2).fit(train).score(queries), [1, s], rtol=1e-6)
    np.testing.assert_allclose(build_scorer("knn1", k=3).fit(train).score(queries), [s, 0], atol=1e-6)
    np.testing.assert_allclose(build_scorer("knn50-mean", k=3).fit(train).score(queries),
                               [(2 + s) / 3, (1 + s) / 3], rtol=1e-6)


def test_probe_features_l2_and_standardised():
    """feature_norm l2: (3, 4) -> (0.6, 0.8); standardise: the training mean and torch's unbiased std (plp-official
    `train_features.std(dim=0)`: sqrt(2) for the values 1 and 3), a constant dim unscaled."""
    from lightning_modules.ood.probe import Probe, _feature_statistics

    weight, bias = [[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]], [0.0, -0.5, 0.25]
    probe = Probe(np.array(weight), np.array(bias), "l2")
    np.testing.assert_allclose(probe.logits(np.array([[3.0, 4.0], [0.0, -2.0]])),
                               [[0.6, 1.1, 0.45], [0.0, -2.5, -0.75]], rtol=1e-12)
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    mean, scale = _feature_statistics(train, "standardise")
    np.testing.assert_allclose(mean, [2, 5])
    np.testing.assert_allclose(scale, [math.sqrt(2), 1])
    np.testing.assert_allclose(scale[0], torch.tensor([1.0, 3.0], dtype=torch.float64).std().item(), rtol=1e-15)
    probe = Probe(np.array(weight), np.array(bias), "standardise", mean, scale)
    np.testing.assert_allclose(probe.features(np.array([[4.0, 7.0]])), [[math.sqrt(2), 2.0]])


def test_zeroshot_msp_from_fixed_text_embeddings():
    from lightning_modules.ood.zeroshot import ZeroShotMSP

    scorer = ZeroShotMSP()
    scorer.text_, scorer.scale_ = np.array([[1.0, 0.0], [0.0, 1.0]]), 10.0
    x = np.array([[2.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    expected = [math.exp(10) / (math.exp(10) + 1), 0.5]  # cosines (1, 0), and a tie (√½, √½) gives 1/2
    np.testing.assert_allclose(scorer.score(x), expected, rtol=1e-6)


# ------------------------------------------------------------------------------- post-hoc probe scores


def fixed_probe(weight, bias):
    from lightning_modules.ood.probe import Probe

    return Probe(np.array(weight, dtype=np.float64), np.array(bias, dtype=np.float64), feature_norm="none")


def test_msp_energy_maxlogit_on_fixed_logits():
    """logits (0, ln 3): softmax (1/4, 3/4). T = 2: softmax of (0, ln 3 / 2) is (1, √3) / (1 + √3)."""
    probe = fixed_probe([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    x = np.array([[0.0, math.log(3)]])
    fitted = lambda name, **p: build_scorer(name, **p).fit(x, probe=probe)  # noqa: E731
    assert fitted("probe-msp").score(x)[0] == pytest.approx(3 / 4, rel=1e-12)
    assert fitted("probe-msp", temperature=2.0).score(x)[0] == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)))
    assert fitted("probe-energy").score(x)[0] == pytest.approx(math.log(4), rel=1e-12)
    assert fitted("probe-energy", temperature=2.0).score(x)[0] == pytest.approx(2 * math.log(1 + math.sqrt(3)))
    assert fitted("probe-maxlogit", temperature=2.0).score(x)[0] == pytest.approx(math.log(3), rel=1e-12)


def test_gen_on_fixed_logits():
    """Probabilities (1/4, 3/4), gamma 1/2: -2 √(3/16); with M = 1 only the largest counts: -√(3/16)."""
    probe = fixed_probe([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    x = np.array([[0.0, math.log(3)]])
    assert build_scorer("probe-gen", gamma=0.5).fit(x, probe=probe).score(x)[0] == pytest.approx(-math.sqrt(3) / 2)
    assert build_scorer("probe-gen", gamma=0.5, top=1).fit(x, probe=probe).score(x)[0] == pytest.approx(-math.sqrt(3) / 4)


def test_vim_worked_by_hand():
    """W = I, b = (1, -1): origin u = -W⁺b = (-1, 1). ID training features u + (±2, 0), u + (0, ±1): covariance
    diag(2, 1/2), so with dim = 1 the residual is the second coordinate. Mean max logit over training: logits
    f + b = (1, 1), (-3, 1), (0, 1), (0, -1) -> maxima 1, 1, 1, 0: 3/4; mean residual 1/2: alpha = 3/2."""
    u = np.array([-1.0, 1.0])
    train = u + np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    probe = fixed_probe([[1.0, 0.0], [0.0, 1.0]], [1.0, -1.0])
    scorer = build_scorer("probe-vim", dim=1).fit(train, probe=probe)
    assert scorer.alpha_ == pytest.approx(1.5, rel=1e-12)
    query = u + np.array([[1.0, 2.0]])  # logits f + b = (1, 2); residual 2
    expected = math.log(math.exp(1) + math.exp(2)) - 1.5 * 2
    assert scorer.score(query)[0] == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------ parity round two (issue 26)


@pytest.fixture(scope="module")
def clip_in_both_spaces():
    """The same random open_clip ViT-B-32 as `projected` and `pre-projection` backbones."""
    from lightning_modules.backbones import build_backbone

    built = {}
    for space in ("projected", "pre-projection"):
        torch.manual_seed(0)
        built[space] = build_backbone(f"openclip/ViT-B-32@{space}", pretrained=False)
    return built


def test_pre_projection_features_are_the_image_tower_before_its_projection(clip_in_both_spaces):
    """plp-official `build_openclip_visual` sets `visual.proj = None`: features before the (768 x 512) projection,
    which maps them onto encode_image's."""
    from lightning_modules.embeddings.extract import embed_images

    images = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    (projected_model, transform), (pre_model, _) = clip_in_both_spaces["projected"], clip_in_both_spaces["pre-projection"]
    projected = embed_images(projected_model, transform, images, batch_size=3, progress=False)
    pre = embed_images(pre_model, transform, images, batch_size=3, progress=False)
    assert projected.shape == (3, 512) and pre.shape == (3, 768)
    projection = projected_model.clip.visual.proj.detach().double().numpy()
    np.testing.assert_allclose(pre.astype(np.float64) @ projection, projected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pre_model.to_joint_space(pre), projected, rtol=1e-4, atol=1e-5)
    assert pre_model.clip.encode_text(pre_model.tokenizer(["a photo of a 3."])).shape == (1, 512)  # text tower kept


def test_zero_shot_and_pseudo_labels_from_pre_projection_features_as_the_official_code(clip_in_both_spaces):
    """logit_evaluation.py: logits = normalize(x @ proj) @ text.T (no logit scale), softmax at T = 1;
    linear_probing.py `clip_pseudo_probs`: argmax of normalize(x) @ proj @ text.T. Worked with numpy on the
    pre-projection features, against the scorer on either backbone."""
    from lightning_modules.ood.zeroshot import class_text_embeddings, joint_space, zero_shot_labels

    pre_model = clip_in_both_spaces["pre-projection"][0]
    projected_model = clip_in_both_spaces["projected"][0]
    names = ["cat", "dog", "ship", "tree"]
    rng = np.random.default_rng(1)
    projection = pre_model.projection.detach().double().numpy()
    pre = rng.normal(size=(40, 768))
    text, _ = class_text_embeddings(pre_model, names, "zeroshot-msp")
    joint = pre @ projection
    cosine = (joint / np.linalg.norm(joint, axis=1, keepdims=True)) @ text.T
    expected = np.exp(cosine) / np.exp(cosine).sum(1, keepdims=True)
    on_pre = build_scorer("zeroshot-msp").fit(pre, backbone=pre_model, class_names=names).score(pre)
    on_projected = build_scorer("zeroshot-msp").fit(joint, backbone=projected_model, class_names=names).score(joint)
    np.testing.assert_allclose(on_pre, expected.max(1), rtol=1e-6)
    np.testing.assert_allclose(on_projected, expected.max(1), rtol=1e-6)
    official_labels = ((pre / np.linalg.norm(pre, axis=1, keepdims=True)) @ projection @ text.T).argmax(1)
    np.testing.assert_array_equal(zero_shot_labels(joint_space(pre_model, pre), text), official_labels)


def test_an_openclip_space_is_named_in_the_spec_and_is_its_own_artifact():
    from lightning_modules.backbones.openclip_models import parse_name
    from lightning_modules.core.naming import backbone_slug

    assert parse_name("ViT-L-14:openai") == ("ViT-L-14", "openai", "projected")
    assert parse_name("ViT-L-14:openai@pre-projection") == ("ViT-L-14", "openai", "pre-projection")
    assert backbone_slug("openclip/ViT-L-14:openai@pre-projection") != backbone_slug("openclip/ViT-L-14:openai")
    with pytest.raises(ValueError, match="space 'joint'; allowed: projected, pre-projection"):
        parse_name("ViT-L-14@joint")


def test_probe_peaks_at_lr_at_any_batch_size():
    """linear_probing.py builds the schedule from the unscaled args.lr and writes it into the optimiser at every
    step: the peak is lr whatever the batch (cosine_scheduler_iter: linspace(0, lr, warm-up), cosine to 0)."""
    from lightning_modules.ood.probe.module import LinearProbe

    module = LinearProbe(4, 3, lr=1e-3, weight_decay=1e-3, warmup_fraction=0.1)
    module._trainer = SimpleNamespace(estimated_stepping_batches=100)
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(100):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(seen[:10], np.linspace(0, 1e-3, 10), rtol=1e-12)
    i = np.arange(90)
    np.testing.assert_allclose(seen[10:], 0.5 * 1e-3 * (1 + np.cos(np.pi * i / 90)), rtol=1e-12, atol=1e-18)


def self_distillation_module(**params):
    from lightning_modules.ood.self_distillation import SelfDistillationModule

    torch.manual_seed(0)
    return SelfDistillationModule(dims=6, epochs=10, out_dim=5, projector_hidden_dim=4, head_hidden_dim=8,
                                  bottleneck_dim=3, **params)


def test_self_distillation_schedules_follow_main_train():
    """The README run's schedules (DINO's cosine_scheduler over 10 epochs x 10 steps here): lr linear from 0 to
    lr x batch / 256 over the warm-up epochs, cosine to min_lr; weight decay cosine from 0.04 to 0.4 on the decayed
    group only."""
    module = self_distillation_module(batch_size=128, lr=4e-3, min_lr=1e-6, warmup_epochs=3)
    trainer = SimpleNamespace(estimated_stepping_batches=100, max_epochs=10, current_epoch=5, global_step=0)
    module._trainer = trainer
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    rates, decays = [], []
    for step in range(100):
        trainer.global_step = step
        module.on_before_optimizer_step(optimizer)
        rates.append(optimizer.param_groups[0]["lr"])
        decays.append([group["weight_decay"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    peak, i = 2e-3, np.arange(70)
    np.testing.assert_allclose(rates[:30], np.linspace(0, peak, 30), rtol=1e-12)
    np.testing.assert_allclose(rates[30:], 1e-6 + 0.5 * (peak - 1e-6) * (1 + np.cos(np.pi * i / 70)), rtol=1e-12)
    steps = np.arange(100)
    np.testing.assert_allclose(np.array(decays)[:, 0], 0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * steps / 100)),
                               rtol=1e-12)
    assert all(group[1] == 0.0 for group in decays)


def test_each_gradient_is_clipped_on_its_own_norm():
    """DINO's clip_gradients: every parameter's gradient times clip / (|g| + 1e-6) when that is below 1."""
    from lightning_modules.core.training import clip_each_gradient

    large, small = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    large.grad, small.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0, 0.0])
    clip_each_gradient([large, small], 3.0)
    torch.testing.assert_close(large.grad, torch.tensor([3.0, 4.0]) * 3 / (5 + 1e-6))
    torch.testing.assert_close(small.grad, torch.tensor([0.0, 1.0, 0.0]))  # norm 1 < 3: untouched


def test_self_distillation_last_layer_is_frozen_in_the_first_epoch_only():
    for epoch, frozen in [(0, True), (1, False)]:
        module = self_distillation_module(freeze_last_layer=1, clip_grad=0.0)
        module._trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=10, current_epoch=epoch,
                                          global_step=0)
        optimizer = module.configure_optimizers()["optimizer"]
        module.student(torch.randn(4, 6)).sum().backward()
        module.on_before_optimizer_step(optimizer)
        last = list(module.student.head.last.parameters())
        assert all((p.grad is None) == frozen for p in last), epoch
        assert module.student.head.mlp[0].weight.grad is not None


def test_self_distillation_teacher_momentum_at_the_step_just_taken():
    """main_train.py: after the optimizer step of iteration `it`, teacher = m * teacher + (1 - m) * student with
    m = momentum_schedule[it] (cosine from teacher_momentum to 1): the first step uses teacher_momentum itself."""
    for taken, total in [(1, 10), (6, 10)]:
        module = self_distillation_module(teacher_momentum=0.9)
        module._trainer = SimpleNamespace(estimated_stepping_batches=total, global_step=taken)
        with torch.no_grad():
            for parameter in module.student.parameters():
                parameter.add_(1.0)
        before = [p.detach().clone() for p in module.teacher.parameters()]
        module.on_train_batch_end(None, None, 0)
        it = taken - 1
        m = 1 - (1 - 0.9) * (np.cos(np.pi * it / total) + 1) / 2
        for old, teacher, student in zip(before, module.teacher.parameters(), module.student.parameters()):
            torch.testing.assert_close(teacher, m * old + (1 - m) * student)


@pytest.mark.parametrize("rows", ["views", "first-samples"])
def test_self_distillation_centre_rows(rows):
    """views: DINO's centre over every teacher output; first-samples: main_train.py's teacher_output[:2]."""
    module = self_distillation_module(centre_rows=rows, center_momentum=0.9)
    anchors, neighbours, negatives = torch.randn(4, 6), torch.randn(4, 6), torch.randn(3, 6)
    with torch.no_grad():
        teacher = module.teacher(torch.cat([anchors, neighbours]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        module.training_step((anchors, neighbours, negatives), 0)
    averaged = teacher if rows == "views" else teacher[:2]
    torch.testing.assert_close(module.centre, 0.1 * averaged.mean(0, keepdim=True))


def test_edm_ema_uses_the_images_seen_before_the_step():
    """training_loop.py: β from cur_nimg before it counts the batch; with the ramp-up β = 0 at the first step, so
    the EMA becomes the weights; at the second, half-life 0.05 x 16 images: β = 0.5^(16 / 0.8)."""
    from lightning_modules.diffusion.model import EDMDenoiser

    model = EDMDenoiser((1, 8, 8), {"name": "mlp", "hidden": 8, "blocks": 1}, ema_halflife_kimg=500,
                        ema_rampup_ratio=0.05)
    with torch.no_grad():
        for parameter in model.denoiser.parameters():
            parameter.add_(1.0)
    model.update_ema(16)
    for ema, weights in zip(model.ema.parameters(), model.denoiser.parameters()):
        torch.testing.assert_close(ema, weights, rtol=0, atol=0)
    before = [p.detach().clone() for p in model.ema.parameters()]
    with torch.no_grad():
        for parameter in model.denoiser.parameters():
            parameter.add_(1.0)
    model.update_ema(16)
    beta = 0.5 ** (16 / 0.8)
    for old, ema, weights in zip(before, model.ema.parameters(), model.denoiser.parameters()):
        torch.testing.assert_close(ema, beta * old + (1 - beta) * weights)
    assert float(model.images_seen) == 32


def test_tiny_paired_differences_are_tested_not_taken_as_constant():
    """Differences 1e-9, 2e-9, 3e-9: scipy's ttest_rel gives p = 0.074 and an interval around their mean."""
    from scipy import stats as scipy_stats

    from lightning_modules.metrics.stats import paired_difference, verdict_word

    b = np.array([0.5, 0.6, 0.7])
    a = b + np.array([1e-9, 2e-9, 3e-9])
    result = paired_difference(a, b)
    assert result["p_value"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-6)
    assert result["p_value"] == pytest.approx(0.0742, abs=1e-3)
    assert result["low"] < result["difference"] < result["high"] and verdict_word(result) == "within noise"
