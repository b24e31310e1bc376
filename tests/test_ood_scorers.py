"""OOD scorers against independent references (scikit-learn, scipy, formulas), the adversarial attack, and
the job function that ties them to the embedding artifacts."""

import json

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from sklearn.covariance import EmpiricalCovariance
from sklearn.neighbors import NearestNeighbors

from lightning_modules.ood import OOD_SCORERS, build_scorer, split_scorer_name


@pytest.fixture(scope="module")
def gaussians():
    """Three ID classes of uneven sizes (150, 60, 30) and shapes in 6 dims (train and test) and OOD samples
    from elsewhere: a size-weighted and an equally weighted covariance differ here."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 6))
    labels = np.repeat(np.arange(3), [150, 60, 30])
    scales = np.array([[1, 2, 1, 0.5, 1, 1], [0.3, 1, 3, 1, 0.5, 2], [2, 0.5, 0.5, 2, 1, 0.3]])
    train = (centres[labels] + rng.normal(0, 1, (240, 6)) * scales[labels]).astype(np.float32)
    test = (centres[labels[::4]] + rng.normal(0, 1, (60, 6))).astype(np.float32)
    ood = rng.normal(0, 3, (50, 6)).astype(np.float32) + 4
    return train, labels, test, ood


def test_registered_names_and_adversarial_names():
    assert {"knn1", "knn50", "knn50-mean", "mahalanobis", "relative-mahalanobis", "cluster-mahalanobis",
            "probe-msp", "probe-energy", "probe-maxlogit", "probe-gen", "probe-vim", "plp-msp", "plp-vim",
            "cluster-probe-energy", "zeroshot-msp", "mahalanobis-pp",
            "relative-mahalanobis-pp"} <= set(OOD_SCORERS.names())
    assert split_scorer_name("knn1-adv-smooth") == ("knn1", "smooth")
    assert split_scorer_name("relative-mahalanobis") == ("relative-mahalanobis", None)
    assert split_scorer_name("mahalanobis-pp-adv-smooth") == ("mahalanobis-pp", "smooth")


@pytest.mark.parametrize("name,k,reduce", [("knn1", 1, "kth"), ("knn50", 50, "kth"), ("knn50-mean", 50, "mean")])
def test_knn_scores_are_cosine_similarities_of_the_nearest_training_points(gaussians, name, k, reduce):
    train, _, test, ood = gaussians
    queries = np.concatenate([test, ood])
    scores = build_scorer(name).fit(train).score(queries)
    distances, _ = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(train).kneighbors(queries)
    similarities = 1 - distances
    expected = similarities[:, -1] if reduce == "kth" else similarities.mean(1)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def pooled_covariance(train, labels):
    """OpenOOD's MDS: sklearn's EmpiricalCovariance on the concatenated class-centred features."""
    centred = np.concatenate([train[labels == c] - train[labels == c].mean(0) for c in np.unique(labels)])
    return EmpiricalCovariance(assume_centered=False).fit(centred).covariance_


def test_mahalanobis_against_scipy_with_sklearn_covariances(gaussians):
    train, labels, test, _ = (np.asarray(a, dtype=np.float64) for a in gaussians)
    inverse = np.linalg.inv(pooled_covariance(train, labels))
    means = [train[labels == c].mean(0) for c in range(3)]
    expected = [-min(scipy_mahalanobis(x, m, inverse) ** 2 for m in means) for x in test]
    np.testing.assert_allclose(build_scorer("mahalanobis").fit(train, labels).score(test), expected, rtol=1e-6)


def test_relative_mahalanobis_subtracts_the_background_distance(gaussians):
    train, labels, test, _ = (np.asarray(a, dtype=np.float64) for a in gaussians)
    covariance = pooled_covariance(train, labels)
    background = EmpiricalCovariance().fit(train)
    means = [train[labels == c].mean(0) for c in range(3)]
    expected = [-min(scipy_mahalanobis(x, m, np.linalg.inv(covariance)) ** 2 - background.mahalanobis(x[None])[0]
                     for m in means) for x in test]
    np.testing.assert_allclose(build_scorer("relative-mahalanobis").fit(train, labels).score(test), expected,
                               rtol=1e-6, atol=1e-8)


def test_mahalanobis_copes_with_a_singular_covariance(digits_pixels):
    x, y = digits_pixels  # the corner pixels of the digits never change
    scores = build_scorer("mahalanobis").fit(x[:1000], y[:1000]).score(x[1000:])
    assert np.isfinite(scores).all() and (scores <= 0).all()


def test_supervised_scorers_refuse_missing_or_unknown_labels(gaussians):
    train, labels, _, _ = gaussians
    with pytest.raises(ValueError, match="'mahalanobis' needs labels"):
        build_scorer("mahalanobis").fit(train, None)
    with pytest.raises(ValueError, match="1 ID training samples have no label"):
        build_scorer("probe-msp").fit(train, np.r_[labels[:-1], -1])


@pytest.mark.parametrize("kind", ["msp", "energy", "maxlogit", "gen", "vim"])
def test_probe_scores_follow_their_formulas_on_the_probe_logits(gaussians, kind):
    train, labels, test, _ = gaussians
    scorer = build_scorer(f"probe-{kind}", epochs=30, batch_size=64, lr=1e-2, temperature=2.0).fit(train, labels)
    train64 = train.astype(np.float64)
    features = (test - train64.mean(0)) / train64.std(0, ddof=1)  # standardised with the ID training statistics
    logits = features @ scorer.probe_.weight.T + scorer.probe_.bias
    np.testing.assert_allclose(scorer.probe_.logits(test), logits, rtol=1e-6)
    assert (logits.argmax(1) == labels[::4]).mean() > 0.9  # the probe learnt the ID classes
    if kind == "vim":  # the formulas on fixed inputs: tests/test_reference_parity.py
        expected = scorer.from_logits(logits, features)
    else:
        expected = {"msp": lambda: softmax(logits / 2, axis=1).max(1),
                    "energy": lambda: 2 * logsumexp(logits / 2, axis=1),
                    "maxlogit": lambda: logits.max(1),
                    "gen": lambda: -(softmax(logits, axis=1) ** 0.1 * (1 - softmax(logits, axis=1)) ** 0.1).sum(1)}[kind]()
    np.testing.assert_allclose(scorer.score(test), expected, rtol=1e-5)


def test_a_shared_probe_is_read_not_retrained(gaussians, tmp_path):
    from lightning_modules.ood.probe import Probe, train_probe

    train, labels, test, _ = gaussians
    probe = train_probe(train, labels, epochs=2, batch_size=64)
    probe.save(tmp_path / "probe.npz")
    loaded = Probe.load(tmp_path / "probe.npz")
    for name in ("probe-energy", "plp-vim", "cluster-probe-gen"):
        # no labels given: a scorer that tried to train its own probe would refuse
        scores = build_scorer(name).fit(train, None, probe=loaded).score(test)
        again = build_scorer(name).fit(train, None, probe=probe).score(test)
        np.testing.assert_array_equal(scores, again)


def test_vim_refuses_a_principal_space_as_large_as_the_features(gaussians):
    from lightning_modules.ood.probe import train_probe

    train, labels, _, _ = gaussians
    probe = train_probe(train, labels, epochs=1)
    with pytest.raises(ValueError, match=r"ood.vim.dim = 6 must lie in 1..5"):
        build_scorer("probe-vim", dim=6).fit(train, probe=probe)


@pytest.fixture(scope="module")
def tiny_clip():
    from lightning_modules.backbones import build_backbone

    torch.manual_seed(0)
    return build_backbone("openclip/ViT-B-32", pretrained=False)[0]


def test_zeroshot_msp_is_the_softmax_over_template_averaged_prompts(tiny_clip):
    from lightning_modules.ood.zeroshot import TEMPLATES

    names = ["cat", "dog", "ship"]
    x = np.random.default_rng(0).normal(size=(5, tiny_clip.clip.text_projection.shape[1])).astype(np.float32)
    scores = build_scorer("zeroshot-msp").fit(x, backbone=tiny_clip, class_names=names).score(x)
    learnt = build_scorer("zeroshot-msp", temperature=None).fit(x, backbone=tiny_clip, class_names=names).score(x)
    with torch.no_grad():
        text = []
        for name in names:
            prompts = tiny_clip.clip.encode_text(tiny_clip.tokenizer([t.format(c=name) for t in TEMPLATES])).double()
            mean = (prompts / prompts.norm(dim=1, keepdim=True)).mean(0)
            text.append((mean / mean.norm()).numpy())
        scale = tiny_clip.clip.logit_scale.exp().item()
    cosine = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ np.stack(text).T
    # the official default: softmax of the raw cosines (temperature 1); null: CLIP's learnt logit scale
    np.testing.assert_allclose(scores, softmax(cosine, axis=1).max(1), rtol=1e-5)
    np.testing.assert_allclose(learnt, softmax(scale * cosine, axis=1).max(1), rtol=1e-5)


def test_zeroshot_needs_a_text_tower():
    from lightning_modules.backbones import build_backbone

    pixels = build_backbone("pixels")[0]
    with pytest.raises(ValueError, match="needs a backbone with a text tower .*'pixels' has none"):
        build_scorer("zeroshot-msp").fit(np.ones((2, 3)), backbone=pixels, backbone_spec="pixels", class_names=["a"])


def test_total_variation_worked_by_hand():
    from lightning_modules.ood.adversarial import total_variation

    delta = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    # vertical differences (1, 0) and horizontal (1, 0): mean squared 1/2 each
    assert total_variation(delta).item() == pytest.approx(1.0)


def test_attack_pulls_ood_images_towards_their_targets_and_tv_smooths_them(digits_pixels):
    from lightning_modules.backbones import build_backbone
    from lightning_modules.ood.adversarial import attack, total_variation

    x, _ = digits_pixels
    images = x[:16].reshape(-1, 1, 8, 8)
    targets = x[100:116]
    model, transform = build_backbone("pixels")

    def cosine(a, b):
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    patchy, after = attack(model, transform, images, targets, steps=60, lr=1e-2, tv_weight=0.0, progress=False)
    smooth, _ = attack(model, transform, images, targets, steps=60, lr=1e-2, tv_weight=50.0, progress=False)
    np.testing.assert_allclose(after, cosine(patchy.reshape(16, -1), targets), rtol=1e-5)
    assert after.mean() > cosine(x[:16], targets).mean() + 0.1
    assert patchy.min() >= 0 and patchy.max() <= 1
    tv = [total_variation(torch.from_numpy(a - images)).mean().item() for a in (patchy, smooth)]
    assert tv[1] < tv[0] / 2


def _write_split(directory, split, embeddings, labels, names):
    from lightning_modules.embeddings.artifact import write_embeddings

    write_embeddings(directory, split, embeddings, labels, {"label_names": names})


def test_score_ood_pair_writes_scores_and_metrics_and_uses_cluster_pseudo_labels(tmp_path, gaussians):
    from lightning_modules.core.io import save_npy
    from lightning_modules.ood.mahalanobis import Mahalanobis
    from lightning_modules.ood.run import score_ood_pair

    train, labels, test, ood = gaussians
    names = ["a", "b", "c"]
    _write_split(tmp_path / "in", "train", train, labels, names)
    _write_split(tmp_path / "in", "test", test, labels[::4], names)
    # the OOD side: a data set of 5 classes of which the pair takes classes 'x' and 'z'
    ood_labels = np.arange(len(ood)) % 5
    _write_split(tmp_path / "out", "test", ood, ood_labels, ["v", "w", "x", "y", "z"])
    assignments = np.random.default_rng(0).integers(0, 4, len(train))
    save_npy(tmp_path / "assignments.npy", assignments)
    record = score_ood_pair("cluster-mahalanobis", {}, tmp_path / "in", "train", "test", tmp_path / "out",
                            ["x", "z"], tmp_path / "run", assignments=tmp_path / "assignments.npy")
    with np.load(tmp_path / "run" / "scores.npz") as scores:
        wanted = ood[np.isin(ood_labels, [2, 4])]
        reference = Mahalanobis().fit(train, assignments)
        np.testing.assert_allclose(scores["ood"], reference.score(wanted))
        np.testing.assert_allclose(scores["id"], reference.score(test))
    assert record["n_ood"] == len(wanted) and record["fit_labels"] == "clusters"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["auroc"] == pytest.approx(record["auroc"])

    save_npy(tmp_path / "short.npy", assignments[:-1])
    with pytest.raises(ValueError, match="239 assignments for 240 ID training embeddings"):
        score_ood_pair("cluster-mahalanobis", {}, tmp_path / "in", "train", "test", tmp_path / "out", None,
                       tmp_path / "run2", assignments=tmp_path / "short.npy")
    assert not (tmp_path / "run2").exists()


def test_plp_probe_learns_the_zero_shot_pseudo_labels_without_the_id_labels(tmp_path, tiny_clip, monkeypatch):
    """PLP: the ID training embeddings labelled by CLIP zero-shot over the class names, a probe trained on those;
    the true labels only measure the pseudo-labels afterwards."""
    from lightning_modules.ood.probe import Probe
    from lightning_modules.ood.run import score_ood_pair
    from lightning_modules.ood.probe.labels import train_shared_probe
    from lightning_modules.ood.zeroshot import class_text_embeddings, zero_shot_labels

    names = ["cat", "dog", "ship"]
    text, _ = class_text_embeddings(tiny_clip, names, "plp-*")
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, 300)
    x = (text[true] + rng.normal(0, 0.02, (300, text.shape[1]))).astype(np.float32)
    shuffled = rng.permutation(true)  # the labels written to disk are wrong: PLP must not read them
    _write_split(tmp_path / "in", "train", x, shuffled, names)
    _write_split(tmp_path / "in", "test", x[:60], shuffled[:60], names)
    _write_split(tmp_path / "out", "test", rng.normal(size=(40, text.shape[1])).astype(np.float32),
                 np.zeros(40, dtype=int), ["noise"])
    monkeypatch.setattr("lightning_modules.backbones.build_from_entry", lambda backbone: (tiny_clip, None))
    record = train_shared_probe("plp", tmp_path / "in", "train", tmp_path / "probe", {"epochs": 20, "batch_size": 64},
                                backbone={"spec": "openclip/ViT-B-32"})
    pseudo = zero_shot_labels(x, text)
    probe = Probe.load(tmp_path / "probe" / "probe.npz")
    assert record["n_classes"] == 3 and record["train_accuracy"] > 0.95
    assert (probe.logits(x).argmax(1) == pseudo).mean() > 0.95
    assert record["pseudo_label_accuracy"] == pytest.approx((pseudo == shuffled).mean())
    scored = score_ood_pair("plp-energy", {}, tmp_path / "in", "train", "test", tmp_path / "out", None,
                            tmp_path / "run", probe=tmp_path / "probe" / "probe.npz")
    assert scored["fit_labels"] == "plp" and 0 <= scored["auroc"] <= 1


def test_zero_shot_pair_reads_the_class_names_of_the_id_split(tmp_path, tiny_clip, monkeypatch):
    """The zero-shot scorers get the ID split's class names from its meta (a run once failed on that import)."""
    from lightning_modules.ood.run import score_ood_pair
    from lightning_modules.ood.zeroshot import class_text_embeddings

    names = ["cat", "dog", "ship"]
    text, _ = class_text_embeddings(tiny_clip, names, "zeroshot-*")
    rng = np.random.default_rng(0)
    x = (text[rng.integers(0, 3, 90)] + rng.normal(0, 0.02, (90, text.shape[1]))).astype(np.float32)
    _write_split(tmp_path / "in", "train", x, np.zeros(90, dtype=int), names)
    _write_split(tmp_path / "in", "test", x[:30], np.zeros(30, dtype=int), names)
    _write_split(tmp_path / "out", "test", rng.normal(size=(30, text.shape[1])).astype(np.float32),
                 np.zeros(30, dtype=int), ["noise"])
    monkeypatch.setattr("lightning_modules.backbones.build_from_entry", lambda backbone: (tiny_clip, None))
    record = score_ood_pair("zeroshot-msp", {}, tmp_path / "in", "train", "test", tmp_path / "out", None,
                            tmp_path / "run", backbone={"spec": "openclip/ViT-B-32"})
    assert record["auroc"] > 0.9


def test_plp_needs_a_text_tower(tmp_path, gaussians, monkeypatch):
    from lightning_modules.backbones import build_backbone
    from lightning_modules.ood.probe.labels import train_shared_probe

    train, labels, _, _ = gaussians
    _write_split(tmp_path / "in", "train", train, labels, ["a", "b", "c"])
    monkeypatch.setattr("lightning_modules.backbones.build_from_entry", lambda backbone: build_backbone("pixels"))
    with pytest.raises(ValueError, match="'plp-\\*' needs a backbone with a text tower"):
        train_shared_probe("plp", tmp_path / "in", "train", tmp_path / "probe", {}, backbone={"spec": "pixels"})
    assert not (tmp_path / "probe").exists()


def test_probe_statistics_accumulated_by_chunks_from_a_memory_map(tmp_path, monkeypatch):
    import lightning_modules.ood.probe as probe_module

    x = np.random.default_rng(0).normal(3, 2, (500, 6)).astype(np.float16)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    monkeypatch.setattr(probe_module, "CHUNK_ROWS", 7)
    mean, scale = probe_module._feature_statistics(mapped, "standardise")
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(scale, x.astype(np.float64).std(0, ddof=1), rtol=1e-12)  # unbiased, as torch.std


def test_a_probe_killed_mid_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """The probe's checkpoint carries weights, optimiser, schedule and the shuffling generator: resuming after a
    crash at the end of epoch 3 of 5 gives the uninterrupted run's weights exactly."""
    from lightning_modules.ood.probe import train_probe
    from lightning_modules.ood.probe.module import LinearProbe

    rng = np.random.default_rng(0)
    x = rng.standard_normal((90, 6)).astype(np.float32)
    y = rng.integers(0, 3, 90)
    kwargs = {"epochs": 5, "batch_size": 16, "seed": 3, "feature_norm": "l2"}
    uninterrupted = train_probe(x, y, **kwargs)

    def crash_at_epoch_3(self):
        if self.current_epoch == 2:
            raise RuntimeError("killed")

    monkeypatch.setattr(LinearProbe, "on_train_epoch_end", crash_at_epoch_3, raising=False)
    with pytest.raises(RuntimeError, match="killed"):
        train_probe(x, y, checkpoint_dir=tmp_path, **kwargs)
    assert (tmp_path / "last.ckpt").exists()
    monkeypatch.undo()
    resumed = train_probe(x, y, checkpoint_dir=tmp_path, **kwargs)
    np.testing.assert_array_equal(resumed.weight, uninterrupted.weight)
    np.testing.assert_array_equal(resumed.bias, uninterrupted.bias)
