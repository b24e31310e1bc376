"""Head losses against direct, unvectorised evaluations of their formulas; the batched multi-head network
against H separate heads; Sinkhorn marginals."""

import math

import numpy as np
import pytest
import torch

from lightning_modules.clustering.heads.base import MultiHead
from lightning_modules.clustering.heads.dec import dec_head_losses, student_t_logits
from lightning_modules.clustering.heads.scan import scan_head_losses
from lightning_modules.clustering.heads.sinkhorn import sinkhorn_targets
from lightning_modules.clustering.heads.temi import TEMI, temi_head_losses

H, B, K = 3, 5, 4


@pytest.fixture
def logits():
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(H, B, K, generator=generator, dtype=torch.float64) for _ in range(4)]


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_temi_loss_matches_the_formula_term_by_term(logits):
    student_x, student_y, teacher_x, teacher_y = logits
    prior = torch.rand(H, K, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.1
    prior /= prior.sum(-1, keepdim=True)
    beta, tau = 0.6, 0.1
    got = temi_head_losses(student_x, student_y, teacher_x, teacher_y, prior, beta, tau)

    def q(t, h, b):
        return softmax([v / tau for v in t[h, b].tolist()])

    expected = []
    for h in range(H):
        total = 0.0
        for b in range(B):
            weight = sum(sum(a * c for a, c in zip(q(teacher_x, g, b), q(teacher_y, g, b))) for g in range(H)) / H
            forward = sum((s * t) ** beta / prior[h, k].item()
                          for k, (s, t) in enumerate(zip(q(student_x, h, b), q(teacher_y, h, b))))
            backward = sum((s * t) ** beta / prior[h, k].item()
                           for k, (s, t) in enumerate(zip(q(student_y, h, b), q(teacher_x, h, b))))
            total += -weight * (math.log(forward) + math.log(backward)) / 2
        expected.append(total / B)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)


def test_temi_compiled_loss_and_gradients_equal_the_eager_ones(monkeypatch):
    """Large CPU runs compile the TEMI step (estimator.COMPILE_MIN_LOSS_ENTRIES); the fit picks that path when
    the run is large enough and trains and assigns through it, and the compiled loss, network and gradients are
    the eager ones."""
    import lightning_modules.clustering.heads.estimator as estimator

    monkeypatch.setattr(estimator, "COMPILE_MIN_LOSS_ENTRIES", 1)
    compiled, compile_step = [], TEMI.compile_step
    monkeypatch.setattr(TEMI, "compile_step", lambda self: (compiled.append(True), compile_step(self)))
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    neighbours = np.stack([np.roll(np.arange(64), shift) for shift in (1, 2, 3)], axis=1)
    estimator.TEMIClustering(3, epochs=1, batch_size=32, n_heads=2, progress=False).fit(x, neighbours=neighbours)
    assert compiled == [True]

    module = TEMI(6, 4, n_heads=2)
    anchors, neighbours = torch.randn(8, 6), torch.randn(8, 6)
    eager, eager_prior = module.step_losses(anchors, neighbours, module.cluster_prior)
    eager_gradients = torch.autograd.grad(eager.sum(), list(module.student.parameters()))
    module.compile_step()
    fused, fused_prior = module.step_function(anchors, neighbours, module.cluster_prior)
    fused_gradients = torch.autograd.grad(fused.sum(), list(module.student.parameters()))
    torch.testing.assert_close(fused, eager)
    torch.testing.assert_close(fused_prior, eager_prior)
    torch.testing.assert_close(fused_gradients, eager_gradients)
    rows = torch.randn(5, 6)
    torch.testing.assert_close(module.cluster_logits(rows, 1)[0], module.cluster_logits(rows)[1])


def test_a_failed_compilation_falls_back_to_the_eager_step(monkeypatch, caplog):
    """torch.compile needs a C++ compiler on the CPU; without one the step warns once and runs eager."""
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)  # a cached graph from an earlier run needs no compiler
    torch._dynamo.reset()
    module = TEMI(5, 3, n_heads=2)
    anchors, neighbours = torch.randn(4, 5), torch.randn(4, 5)
    eager, _ = module.step_losses(anchors, neighbours, module.cluster_prior.clone())
    module.compile_step()
    with caplog.at_level("WARNING"):
        losses = module.head_losses(anchors, neighbours)
    torch._dynamo.reset()
    torch.testing.assert_close(losses, eager)
    assert module.step_function == module.step_losses and "runs eager" in caplog.text


def test_scan_loss_matches_the_formula_term_by_term(logits):
    logits_x, logits_y = logits[:2]
    got = scan_head_losses(logits_x, logits_y, entropy_weight=5.0)
    expected = []
    for h in range(H):
        p_x = [softmax(logits_x[h, b].tolist()) for b in range(B)]
        p_y = [softmax(logits_y[h, b].tolist()) for b in range(B)]
        consistency = sum(-math.log(sum(a * c for a, c in zip(p_x[b], p_y[b]))) for b in range(B)) / B
        mean_p = [sum(p_x[b][k] for b in range(B)) / B for k in range(K)]
        entropy = -sum(p * math.log(p) for p in mean_p)
        expected.append(consistency - 5.0 * entropy)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)


def test_dec_loss_matches_the_formula_term_by_term():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(B, 2, generator=generator, dtype=torch.float64)
    centroids = torch.randn(1, K, 2, generator=generator, dtype=torch.float64)
    got = dec_head_losses(student_t_logits(x, centroids, alpha=1.0), prior_weight=0.5)
    kernel = [[1 / (1 + sum((a - c) ** 2 for a, c in zip(x[b].tolist(), centroids[0, k].tolist()))) for k in range(K)]
              for b in range(B)]
    q = [[v / sum(row) for v in row] for row in kernel]
    f = [sum(q[b][k] for b in range(B)) for k in range(K)]
    p_raw = [[q[b][k] ** 2 / f[k] for k in range(K)] for b in range(B)]
    p = [[v / sum(row) for v in row] for row in p_raw]
    kl = sum(p[b][k] * math.log(p[b][k] / q[b][k]) for b in range(B) for k in range(K)) / B
    freq = [fk / B for fk in f]
    prior = sum(v * math.log(v * K) for v in freq)
    assert got.item() == pytest.approx(kl + 0.5 * prior, rel=1e-9)


def test_sinkhorn_targets_have_the_right_marginals():
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 64, 8, generator=generator) * 0.2
    imbalance = {}
    for iterations in (3, 500):
        q = sinkhorn_targets(scores, epsilon=0.05, iterations=iterations)
        assert (q >= 0).all()
        torch.testing.assert_close(q.sum(-1), torch.ones(2, 64))  # every sample: one unit of mass
        imbalance[iterations] = (q.sum(1) / (64 / 8) - 1).abs().max().item()  # every cluster: B/K at convergence
    plain = (scores / 0.05).softmax(-1)
    assert imbalance[500] < 1e-3
    assert imbalance[3] < (plain.sum(1) / (64 / 8) - 1).abs().max().item()


def test_batched_heads_equal_separate_heads():
    torch.manual_seed(0)
    network = MultiHead(in_dim=6, n_clusters=K, n_heads=H, hidden_dim=8, bottleneck_dim=5)
    x = torch.randn(B, 6)
    batched = network(x)
    for h in range(H):
        first = torch.nn.functional.gelu(x @ network.first.weight[h * 8:(h + 1) * 8].T + network.first.bias[h * 8:(h + 1) * 8])
        bottleneck = torch.nn.functional.normalize(first @ network.second_weight[h] + network.second_bias[h], dim=-1)
        direction = network.last_direction[h] / network.last_direction[h].norm(dim=0, keepdim=True)
        torch.testing.assert_close(batched[h], bottleneck @ direction)
        torch.testing.assert_close(network(x, head=h)[0], batched[h])  # one head alone: the assignment pass
    assert batched.abs().max() <= 1 + 1e-6  # cosine logits


def test_dec_logits_of_one_head_are_that_head_of_all():
    from lightning_modules.clustering.heads.dec import DEC

    module = DEC(6, K, n_heads=3, initial_centroids=np.random.default_rng(0).normal(size=(3, K, 6)))
    x = torch.randn(B, 6)
    torch.testing.assert_close(module.cluster_logits(x, 2)[0], module.cluster_logits(x)[2])


def test_temi_teacher_follows_the_student_and_prior_stays_a_distribution():
    torch.manual_seed(0)
    module = TEMI(in_dim=6, n_clusters=K, n_heads=H, hidden_dim=8, bottleneck_dim=5, teacher_momentum=0.5)
    with torch.no_grad():
        for parameter in module.student.parameters():
            parameter.add_(1.0)
    before = [p.clone() for p in module.teacher.parameters()]
    module.on_train_batch_end(None, None, 0)
    for old, teacher, student in zip(before, module.teacher.parameters(), module.student.parameters()):
        torch.testing.assert_close(teacher, (old + student) / 2)
    module.head_losses(torch.randn(B, 6), torch.randn(B, 6))
    torch.testing.assert_close(module.cluster_prior.sum(-1), torch.ones(H))


def blobs(n_per_cluster=60, n_clusters=4, dims=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (n_clusters, dims))
    x = np.concatenate([c + rng.normal(0, 0.5, (n_per_cluster, dims)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(n_clusters), n_per_cluster)


@pytest.mark.parametrize("method", ["temi", "scan", "sinkhorn", "dec"])
def test_heads_recover_well_separated_clusters(method):
    from lightning_modules.clustering import METHODS
    from lightning_modules.search.neighbours import knn_graph
    from lightning_modules.metrics.clustering import hungarian_accuracy

    x, y = blobs()
    neighbours, _ = knn_graph(x, k=10)
    params = {"epochs": 30, "batch_size": 32, "lr": 4e-3, "progress": False}
    if method != "dec":
        params.update(n_heads=4, hidden_dim=32, bottleneck_dim=16)
    if method == "temi":
        params["teacher_momentum"] = 0.9  # a few hundred steps: the teacher must keep up
    model = METHODS.get(method)(n_clusters=4, seed=0, **params)
    labels = model.fit_predict(x, neighbours=neighbours)  # no labels reach the model
    assert hungarian_accuracy(y, labels) > 0.95
    assert model.probs_.shape == (len(x), 4)
    np.testing.assert_allclose(model.probs_.sum(1), 1, rtol=1e-5)
    assert model.selected_head_ == int(np.argmin(model.head_losses_))  # the lowest training loss wins


def test_head_training_is_reproducible():
    from lightning_modules.clustering.heads.estimator import TEMIClustering

    x, _ = blobs(n_per_cluster=20)
    neighbours = np.tile(np.arange(5), (len(x), 1))
    kwargs = {"epochs": 2, "batch_size": 16, "n_heads": 2, "hidden_dim": 8, "bottleneck_dim": 4, "progress": False}
    first = TEMIClustering(4, seed=3, **kwargs).fit(x, neighbours)
    second = TEMIClustering(4, seed=3, **kwargs).fit(x, neighbours)
    np.testing.assert_array_equal(first.probs_, second.probs_)


@pytest.mark.parametrize("method", ["temi", "dec"])
def test_a_head_killed_mid_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, method):
    """The checkpoint carries weights, optimiser, schedule and the data's random state: resuming after a
    crash at the end of epoch 3 of 5 gives exactly what an uninterrupted run gives."""
    from lightning_modules.clustering import METHODS

    x, _ = blobs(n_per_cluster=20)
    neighbours = np.tile(np.arange(1, 6), (len(x), 1))
    kwargs = {"epochs": 5, "batch_size": 16, "n_heads": 2, "progress": False}
    if method == "temi":
        kwargs.update(hidden_dim=8, bottleneck_dim=4)
    estimator = METHODS.get(method)
    uninterrupted = estimator(4, seed=1, **kwargs).fit(x, neighbours)

    module_class = type(estimator(4, **kwargs).build_module(x))
    original = module_class.on_train_epoch_end

    def crash_at_epoch_3(self):
        original(self)
        if self.current_epoch == 2:
            raise RuntimeError("killed")

    monkeypatch.setattr(module_class, "on_train_epoch_end", crash_at_epoch_3)
    with pytest.raises(RuntimeError, match="killed"):
        estimator(4, seed=1, **kwargs).fit(x, neighbours, checkpoint_dir=tmp_path)
    assert (tmp_path / "last.ckpt").exists()
    monkeypatch.setattr(module_class, "on_train_epoch_end", original)
    resumed = estimator(4, seed=1, **kwargs).fit(x, neighbours, checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(resumed.probs_, uninterrupted.probs_)
    np.testing.assert_array_equal(resumed.head_losses_, uninterrupted.head_losses_)


@pytest.mark.parametrize("k", [1, 81])
def test_k_outside_range_fails_before_training(k):
    from lightning_modules.clustering.heads.estimator import SCANClustering

    x, _ = blobs(n_per_cluster=20)
    with pytest.raises(ValueError, match="clustering.k"):
        SCANClustering(k, progress=False).fit(x, np.zeros((80, 3), dtype=np.int32))


def test_self_label_loss_matches_the_formula_term_by_term(logits):
    from lightning_modules.clustering.heads.scan import self_label_head_losses

    sharp = logits[0] * 4  # some samples above the threshold, some below
    threshold = 0.9
    got = self_label_head_losses(sharp, threshold)
    for h in range(H):
        probs = [softmax(sharp[h, b].tolist()) for b in range(B)]
        confident = [(b, max(range(K), key=lambda k: p[k])) for b, p in enumerate(probs) if max(p) > threshold]
        if not confident:
            assert got[h].item() == 0
            continue
        counts = {k: sum(1 for _, label in confident if label == k) for _, k in confident}
        weights = {k: len(confident) / count for k, count in counts.items()}
        expected = sum(-weights[k] * math.log(probs[b][k]) for b, k in confident) / sum(weights[k] for _, k in confident)
        assert got[h].item() == pytest.approx(expected, rel=1e-9)
    assert any(got[h].item() != 0 for h in range(H))  # the example does exercise the confident case


def test_scan_self_labelling_runs_after_the_clustering_epochs():
    from lightning_modules.clustering.heads.estimator import SCANClustering

    x, y = blobs()
    neighbours = np.stack([np.roll(np.arange(len(x)), -1)] * 3, 1)
    model = SCANClustering(4, epochs=2, self_label_epochs=2, batch_size=32, n_heads=2, hidden_dim=16,
                           bottleneck_dim=8, progress=False).fit(x, neighbours)
    assert model.epochs == 2 and model.probs_.shape == (len(x), 4)


def test_heads_train_from_a_float16_memory_map_as_from_its_float32_values(tmp_path):
    """Batches are gathered from the memory map (no full float32 copy) and give what the same values in memory
    give; the graph may be a read-only int32 memory map too."""
    from lightning_modules.clustering.heads.estimator import TEMIClustering

    x, _ = blobs(n_per_cluster=20)
    np.save(tmp_path / "x.npy", x.astype(np.float16))
    np.save(tmp_path / "knn.npy", np.tile(np.arange(1, 6, dtype=np.int32), (len(x), 1)))
    mapped, graph = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "knn.npy", mmap_mode="r")
    kwargs = {"epochs": 2, "batch_size": 16, "n_heads": 2, "hidden_dim": 8, "bottleneck_dim": 4, "progress": False}
    from_map = TEMIClustering(4, seed=3, **kwargs).fit(mapped, graph)
    in_memory = TEMIClustering(4, seed=3, **kwargs).fit(mapped.astype(np.float32), np.array(graph))
    np.testing.assert_array_equal(from_map.probs_, in_memory.probs_)


def test_top_two_is_a_stable_sort_s_first_two_columns_ties_included():
    from lightning_modules.clustering.heads.estimator import top_two

    probabilities = np.array([[0.2, 0.5, 0.3], [0.4, 0.2, 0.4], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.1, 0.8]])
    expected = np.argsort(-probabilities, axis=1, kind="stable")[:, :2]
    np.testing.assert_array_equal(top_two(probabilities), expected)
    assert top_two(probabilities).dtype == np.int32


@pytest.mark.parametrize("shape, dim", [((1797, 10), -1), ((16, 64, 10), -1), ((7, 3), 0), ((5, 40), -1), ((1, 1), -1)])
def test_the_short_dimension_softmax_is_torchs_softmax(shape, dim):
    """core.softmax takes a softmax over fewer than 16 entries over a leading dimension (torch's last-dimension
    kernel is slow there): the same values as torch's and its gradients to float rounding; the soft cross-entropy
    is F.cross_entropy with probability targets."""
    import torch.nn.functional as F

    from lightning_modules.core.softmax import log_softmax, soft_cross_entropy, softmax

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.allclose(log_softmax(x, dim), x.log_softmax(dim), atol=1e-6)
    assert torch.allclose(softmax(x, dim), x.softmax(dim), atol=1e-7)
    weights = torch.rand(shape)
    ours, = torch.autograd.grad((log_softmax(x, dim) * weights).sum(), x)
    torchs, = torch.autograd.grad((x.log_softmax(dim) * weights).sum(), x)
    assert torch.allclose(ours, torchs, atol=1e-5)
    if len(shape) == 2:
        targets = torch.rand(shape).softmax(1)
        assert torch.allclose(soft_cross_entropy(x, targets), F.cross_entropy(x, targets), atol=1e-6)
