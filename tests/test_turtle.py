"""TURTLE against its formulas (mlbio-epfl/turtle run_turtle.py) and on data with a known answer, the
random-features backbone it pairs with on digits, and the multi-space setting end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import gaussian_blobs
from lightning_modules.clustering.turtle import TURTLE, outer_loss, task_labels
from lightning_modules.services.tracking import result_runs


def test_labels_are_the_mean_of_the_spaces_softmaxes_and_the_outer_loss_by_hand():
    torch.manual_seed(0)
    encoders = [nn.Linear(3, 2), nn.Linear(4, 2)]
    classifiers = [nn.Linear(3, 2), nn.Linear(4, 2)]
    spaces = [torch.randn(5, 3), torch.randn(5, 4)]
    labels, per_space = task_labels(encoders, spaces)
    softmaxes = [torch.softmax(e(z), 1) for e, z in zip(encoders, spaces)]
    torch.testing.assert_close(labels, (softmaxes[0] + softmaxes[1]) / 2)
    total, error, entropy = outer_loss(classifiers, encoders, spaces, gamma=10.0)
    # cross-entropy with soft targets: −Σ_c y_c log softmax(W z)_c, averaged over the batch, summed over spaces
    by_hand = sum(-(labels * torch.log_softmax(c(z), 1)).sum(1).mean() for c, z in zip(classifiers, spaces))
    mean_entropy = sum(-(p.mean(0) * p.mean(0).log()).sum() for p in softmaxes)
    torch.testing.assert_close(error, by_hand)
    torch.testing.assert_close(entropy, mean_entropy)
    torch.testing.assert_close(total, by_hand - 10.0 * mean_entropy)


def test_the_classifiers_logits_carry_no_gradient_to_the_outer_step():
    torch.manual_seed(1)
    encoders, classifiers = [nn.Linear(3, 2)], [nn.Linear(3, 2)]
    total, _, _ = outer_loss(classifiers, encoders, [torch.randn(4, 3)], gamma=1.0)
    total.backward()
    assert classifiers[0].weight.grad is None and encoders[0].weight.grad is not None


def test_turtle_recovers_separated_clusters_in_one_and_two_spaces():
    from lightning_modules.metrics.clustering import hungarian_accuracy

    x, truth = gaussian_blobs(n_per=60, centres=3, dims=4, spread=8.0)
    second = np.tanh(x @ np.random.default_rng(5).normal(size=(4, 6))).astype(np.float32)  # another view of the same points
    one = TURTLE(3, seed=0, outer_steps=150, inner_lr=1e-2, outer_lr=1e-2).fit_predict(x)
    two_model = TURTLE(3, seed=0, outer_steps=150, inner_lr=1e-2, outer_lr=1e-2)
    two = two_model.fit_predict(x, spaces=[second])
    assert hungarian_accuracy(truth, one) > 0.95 and hungarian_accuracy(truth, two) > 0.95
    assert two_model.probs_.shape == (180, 3) and np.allclose(two_model.probs_.sum(1), 1, atol=1e-5)
    again = TURTLE(3, seed=0, outer_steps=150, inner_lr=1e-2, outer_lr=1e-2).fit_predict(x)
    assert np.array_equal(one, again)  # seeded
    with pytest.raises(ValueError, match="embed different numbers of images"):
        TURTLE(3, outer_steps=1).fit_predict(x, spaces=[second[:10]])


def test_random_features_backbone_is_fixed_and_checks_its_name():
    from lightning_modules.backbones import build_backbone

    model, _ = build_backbone("random/16")
    images = torch.rand(3, 1, 8, 8)
    first = model(images)
    assert first.shape == (3, 16) and (first >= 0).all() and torch.equal(first, build_backbone("random/16")[0](images))
    assert not torch.equal(first, build_backbone("random/16", seed=1)[0](images))
    with pytest.raises(ValueError, match="give the number of features"):
        build_backbone("random/many")


def test_other_images_in_a_second_space_stop_in_one_line(tmp_path):
    from lightning_modules.clustering.run import same_images_embeddings

    for name, count in (("a", 10), ("b", 12)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "all.meta.json").write_text(json.dumps({"dataset_fingerprint": "x", "count": count}))
    with pytest.raises(ValueError, match=r"embeds other images than .* \(12 vs 10 rows"):
        same_images_embeddings(tmp_path / "a", tmp_path / "b", "all")


def test_multi_space_turtle_in_the_sweep(tmp_path):
    from conftest import finished_sweep
    from mlflow.tracking import MlflowClient

    config = {"sweep": "turtle", "datasets": {"digits": {"source": "digits", "split": "test"}}, "backbones": ["pixels"],
              "knn": {"k": 5}, "clustering": {"k": [10], "seeds": [0], "methods": {
                  "kmeans": {"n_init": 1}, "turtle": {"outer_steps": 30, "inner_lr": 1e-2, "outer_lr": 1e-2,
                                                     "spaces": [["pixels", "random/32"]]}}}}
    finished_sweep(tmp_path, config)
    table = pd.read_parquet(tmp_path / "results" / "tables" / "clustering.parquet")
    assert sorted(zip(table.backbone, table.method)) == [("pixels", "kmeans"), ("pixels", "turtle"),
                                                          ("pixels+random-32", "turtle")]
    assert table.acc.gt(0.3).all() and table.knn_agreement.notna().all()  # measured on the primary's graph
    assert (tmp_path / "results" / "digits" / "random-32" / "embeddings" / "test.npy").exists()
    selection = pd.read_parquet(tmp_path / "results" / "tables" / "selection.parquet")
    assert set(selection.backbone) == {"pixels", "pixels+random-32"}
    client = MlflowClient(f"sqlite:///{tmp_path}/results/mlflow.db")
    runs = result_runs(client, client.get_experiment_by_name("turtle").experiment_id)
    assert sorted(r.data.tags["backbone"] for r in runs) == ["pixels", "pixels", "pixels+random-32"]
