"""The Snakefile's input functions (lightning_modules/workflow/files.py), called as the rules call them: on the
demo's config, with wildcards as Snakemake passes them."""

from types import SimpleNamespace

import pytest
import yaml

from conftest import REPO
from lightning_modules.core import layout
from lightning_modules.core.layout import ClusteringRun, DiffusionRun, OodRun
from lightning_modules.workflow.config import validate_config
from lightning_modules.workflow.files import LONG_CHAIN_PRIORITY, SMALL_JOBS, SweepFiles


class Wildcards(SimpleNamespace):
    """What Snakemake hands an input function: attributes, and `keys()`."""

    def keys(self):
        return vars(self).keys()


@pytest.fixture(scope="module")
def files():
    config = validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    return SweepFiles(config, upper_bound=lambda dataset, backbone: 13)


def test_a_clustering_run_reads_its_embeddings_labels_and_the_knn_graph(files):
    wildcards = Wildcards(dataset="digits", backbone="pixels+random-256", method="turtle", k="10", seed="0")
    inputs = files.clustering_inputs(wildcards)
    assert inputs["embeddings"] == "results/digits/pixels/embeddings/all.npy"  # the primary backbone's
    assert inputs["labels"] == "results/digits/pixels/embeddings/all.labels.npy"
    assert inputs["knn"] == "results/digits/pixels/knn/all.k50.npy"
    assert inputs["spaces"] == ["results/digits/random-256/embeddings/all.npy"]
    assert files.cluster_group(Wildcards(method="kmeans")) == SMALL_JOBS and files.cluster_group(wildcards) is None
    assert files.method_params(Wildcards(method="kmeans"))["n_init"] >= 1


def test_a_scorer_reads_what_its_registry_entry_says(files):
    pair = Wildcards(dataset="digits-04", backbone="pixels", ood="digits04-vs-digits59")
    probe = files.ood_inputs(Wildcards(**vars(pair), scorer="probe-energy"))
    assert probe["probe"] == "results/digits-04/pixels/ood/probes/classes/probe.npz"
    clusters = files.ood_inputs(Wildcards(**vars(pair), scorer="cluster-mahalanobis"))
    assert clusters["assignments"] == "results/digits-04/pixels/clusters/kmeans/k10/seed0/assignments.npy"
    attacked = files.ood_inputs(Wildcards(**vars(pair), scorer="knn1-adv-smooth"))
    assert attacked["attack"] == "results/digits-04/pixels/ood/digits04-vs-digits59/attacks/smooth/attack.json"
    negatives = files.ood_inputs(Wildcards(**vars(pair), scorer="selfdistill-rotations"))
    assert {"negatives_train", "negatives_test"} <= set(negatives)
    assert files.ood_score_group(Wildcards(scorer="selfdistill-rotations")) is None
    params = files.ood_run_params(Wildcards(**vars(pair), scorer="cluster-probe-energy"))
    assert params["probe"].endswith("ood/probes/clusters/probe.npz") and params["assignments"] is None
    probe_inputs = files.ood_probe_inputs(Wildcards(dataset="digits-04", backbone="pixels", source="clusters"))
    assert probe_inputs["assignments"].endswith("clusters/kmeans/k10/seed0/assignments.npy")
    assert "assignments" not in files.ood_probe_inputs(Wildcards(dataset="digits-04", backbone="pixels", source="classes"))
    with pytest.raises(ValueError, match="has in-dataset 'digits-04'"):
        files.ood_pair(Wildcards(dataset="digits", ood="digits04-vs-digits59"))


def test_a_cluster_conditioned_diffusion_run_reads_its_clustering_and_the_bound_extends_the_grid(files):
    cluster_files = files.diffusion_cluster_files(Wildcards(dataset="digits", cond="clusters-kmeans-k20"))
    assert cluster_files["assignments"] == "results/digits/pixels/clusters/kmeans/k20/seed0/assignments.npy"
    assert files.diffusion_cluster_files(Wildcards(dataset="digits", cond="class")) == {}
    runs = files.diffusion_run_files("metrics.json")(Wildcards())
    assert f"results/{DiffusionRun('digits', 'clusters-kmeans-k13', 0).file('metrics.json')}" in runs  # the bound
    params = files.diffusion_run_params(Wildcards(dataset="digits", cond="none"))
    assert params["seeds"] == [0, 1, 2]  # seeds in one job


def test_the_clustering_runs_diffusion_conditions_on_are_scheduled_with_its_chain(files):
    conditioned = Wildcards(dataset="digits", backbone="pixels", method="kmeans", k="20", seed="0")
    assert files.cluster_priority(conditioned) == LONG_CHAIN_PRIORITY
    for other in ({"seed": "1"}, {"method": "temi"}, {"dataset": "digits-lt10"}, {"backbone": "pixels+random-256"}):
        assert files.cluster_priority(Wildcards(**{**vars(conditioned), **other})) == 0, other


def test_rule_logs_and_outputs_come_from_the_layout(files):
    assert files.log("cluster", ClusteringRun) == f"results/logs/cluster/{ClusteringRun.FOLDER}.log"
    assert files.log("ood_table") == "results/logs/ood_table.log"
    assert files.output(OodRun, "scores.npz") == f"results/{OodRun.pattern('scores.npz')}"
    assert files.diffusion_log() == "results/logs/diffusion/{dataset}/{cond}/seeds.log"
    assert layout.log_pattern("embed", layout.Embeddings, "{split}") == "logs/embed/{dataset}/{backbone}/embeddings/{split}.log"
    assert [report.rsplit("/", 1)[1] for report in files.sweep_reports()] == [
        "clustering.html", "ood.html", "diffusion.html", "claims.html"]
