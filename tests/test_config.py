import copy
import re
import subprocess
import sys

import pytest
import yaml

import forks
from conftest import REPO
from lightning_modules.clustering import METHODS
from lightning_modules.core.checks import ConfigError
from lightning_modules.workflow.config import validate_config

SCHEMA = REPO / "config" / "schema.yaml"


@pytest.fixture
def default_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults(default_config):
    config = validate_config(default_config, SCHEMA)
    assert config["results_dir"] == "results"
    assert config["embed"]["num_workers"] == 0
    assert config["clustering"]["methods"]["kmeans"]["use_gpu"] == "auto"
    assert config["clustering"]["methods"]["temi"]["beta"] == 0.6  # schema default
    assert config["knn"]["query_batch"] == 65536


def test_method_grids_and_truncation_at_the_bound(default_config):
    from lightning_modules.workflow.sweep import clustering_runs

    config = validate_config(default_config, SCHEMA)
    runs = [run.folder for run in clustering_runs(config, ["pixels"])]
    # kmeans everywhere (4 K x 3 seeds); temi on two datasets, scan/sinkhorn/dec on one (2 K x 3 seeds); turtle
    # at K = 10 on digits alone and with the random features (2 settings x 3 seeds)
    assert len(runs) == 3 * 4 * 3 + (2 + 3) * 2 * 3 + 2 * 3
    assert "digits/pixels+random-256/clusters/turtle/k10/seed2" in runs
    assert "digits/pixels/clusters/temi/k20/seed2" in runs and "digits-lt10/pixels/clusters/temi/k10/seed0" in runs
    assert "digits/pixels/clusters/temi/k50/seed0" not in runs and "digits-coarse/pixels/clusters/scan/k10/seed0" not in runs
    truncated = clustering_runs(config, ["pixels"], bound=lambda dataset, backbone: 13)
    assert {run.k for run in truncated} == {5, 10}


def test_the_schema_is_assembled_from_the_plugins_declarations_without_importing_them():
    """Each method's settings come from its own module (SETTINGS on its SETTINGS_BASE group), the feature networks
    from their registry; validating a config imports no plug-in (every job's Snakefile parse validates it)."""
    code = """
import sys, yaml
from lightning_modules.workflow.config import assembled_schema, validate_config
from lightning_modules.clustering import METHODS
from lightning_modules.diffusion import FEATURE_NETWORKS
schema = assembled_schema()
assert sorted(schema["properties"]["clustering"]["properties"]["methods"]["properties"]) == METHODS.names()
assert schema["properties"]["diffusion"]["properties"]["metrics"]["properties"]["networks"]["items"]["enum"] == FEATURE_NETWORKS.names()
config = validate_config({"sweep": "s", "datasets": {"d": {"source": "digits"}}, "backbones": ["pixels"],
                         "clustering": {"k": [5], "seeds": [0], "methods": {"temi": {}}}})
assert config["clustering"]["methods"]["temi"]["beta"] == METHODS.entry("temi").declared["SETTINGS"]["beta"]["default"]
assert config["clustering"]["methods"]["temi"]["epochs"] == schema["$defs"]["head_training"]["epochs"]["default"]
assert "torch" not in sys.modules, "validating a config imported torch"
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


def _rename(config, dotted, new_name):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[new_name] = node.pop(last)


_DELETE = object()

BAD_VALUES = [
    ("datasets.digits.source", "digitz", ["datasets.digits.source", "did you mean 'digits'", "allowed: cifar10, cifar100, digits"]),
    ("datasets.digits.split", "validation", ["datasets.digits.split", "allowed: all, train, test"]),
    ("backbones", ["pixles"], ["backbones[0]", "did you mean 'pixels'"]),
    ("clustering.k", [1, 10], ["clustering.k[0]", ">= 2"]),
    ("clustering.k", [10, 5000], ["clustering.k = 5000", "1797 samples", "allowed: 2..1797"]),
    ("clustering.k", [], ["clustering.k is empty"]),
    ("clustering.k", [5, 10, 5], ["clustering.k lists 5 more than once"]),
    ("clustering.k", "10", ["clustering.k", "wrong type", "array"]),
    ("clustering.seeds", [-1], ["clustering.seeds[0]"]),
    ("clustering.methods.kmeans.n_init", 0, ["clustering.methods.kmeans.n_init", ">= 1"]),
    ("clustering.methods.kmeans.spherical", "yes", ["clustering.methods.kmeans.spherical", "boolean"]),
    ("embed.dtype", "float64", ["embed.dtype", "allowed: float32, float16"]),
    ("sweep", "My Sweep", ["sweep", "lower-case"]),
    ("datasets", {}, ["datasets is empty"]),
    ("clustering.methods", {}, ["clustering.methods is empty"]),
    ("clustering.methods.temi.k", [10, 2000], ["clustering.methods.temi.k = 2000", "allowed: 2..1797"]),
    ("clustering.methods.temi.teacher_momentum", 1.5, ["clustering.methods.temi.teacher_momentum"]),
    ("clustering.methods.dec.n_heads", 0, ["clustering.methods.dec.n_heads", ">= 1"]),
    ("clustering.upper_bound.k", 5000, ["clustering.upper_bound.k = 5000", "allowed: 2..1797"]),
    ("knn.k", 1797, ["knn.k = 1797", "allowed: 1..1796"]),
]


@pytest.mark.parametrize("key,value,expected", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_values_fail_in_one_line_naming_key_and_allowed(default_config, key, value, expected):
    config = copy.deepcopy(default_config)
    _set(config, key, value)
    with pytest.raises(ConfigError) as raised:
        validate_config(config, SCHEMA)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message


MISSPELT_KEYS = [
    ("clustering", "clusterng", "unknown key 'clusterng' (did you mean 'clustering'?)"),
    ("clustering.methods.kmeans", "kmean", "unknown key 'clustering.methods.kmean' (did you mean 'kmeans'?)"),
    ("clustering.methods.kmeans.n_init", "ninit", "unknown key 'clustering.methods.kmeans.ninit' (did you mean 'n_init'?)"),
    ("embed.batch_size", "batchsize", "unknown key 'embed.batchsize' (did you mean 'batch_size'?)"),
]


@pytest.mark.parametrize("key,new_name,expected", MISSPELT_KEYS, ids=[m[1] for m in MISSPELT_KEYS])
def test_misspelt_keys_get_a_suggestion(default_config, key, new_name, expected):
    _rename(default_config, key, new_name)
    with pytest.raises(ConfigError, match="allowed: ") as raised:
        validate_config(default_config, SCHEMA)
    assert expected in str(raised.value)


def test_snakemake_stops_before_any_job_with_one_line(tmp_path, default_config):
    default_config["clustering"]["k"] = [1]
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump(default_config))
    result = forks.run(forks.SNAKEMAKE, ["-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                                         str(config_file), "--cores", "1"], timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "config error: clustering.k[0] = 1 is too small; allowed: values >= 2"
    ], result.stderr
    assert not (tmp_path / "results").exists()


def test_every_missing_data_root_is_listed_in_one_line(default_config, tmp_path):
    default_config["datasets"] = {
        "c10": {"source": "cifar10", "split": "train", "root": str(tmp_path / "nowhere")},
        "inet": {"source": "imagefolder", "split": "train", "root": str(tmp_path / "imagenet")},
        "digits": {"source": "digits"},
    }
    with pytest.raises(ConfigError) as raised:
        validate_config(default_config, SCHEMA)
    message = str(raised.value)
    assert "\n" not in message and "datasets.c10.root" in message and "datasets.inet.root" in message


def test_dataset_options_are_checked_against_the_loader(default_config):
    default_config["datasets"]["digits"]["roots"] = "/data"
    with pytest.raises(ConfigError, match=r"unknown key 'datasets.digits.roots' for source 'digits'; allowed: classes, easiest, coarse_groups"):
        validate_config(default_config, SCHEMA)


def test_backbones_may_carry_options(default_config):
    default_config["backbones"] = ["pixels", {"spec": "timm/vit_tiny_patch16_224", "pretrained": False}]
    config = validate_config(default_config, SCHEMA)
    assert config["backbones"][0] == {"spec": "pixels"} and config["backbones"][1]["pretrained"] is False
    default_config["backbones"] = [{"spec": "timm/x", "pretrianed": False}]
    with pytest.raises(ConfigError, match=r"unknown key 'backbones\[0\].pretrianed' \(did you mean 'pretrained'\?\)"):
        validate_config(default_config, SCHEMA)


def test_paper_config_lists_every_missing_data_root_at_once():
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    with pytest.raises(ConfigError) as raised:
        validate_config(config, SCHEMA)
    message = str(raised.value)
    for name in ("cifar10", "cifar100", "cifar100-coarse", "cifar100-lt10", "imagenet"):
        assert f"datasets.{name}.root" in message


def test_paper_config_is_valid_where_the_data_is(tmp_path):
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for dataset in config["datasets"].values():
        dataset["root"] = str(tmp_path)
    config["data_roots"] = [str(tmp_path)]
    validated = validate_config(config, SCHEMA)
    assert [b["spec"] for b in validated["backbones"]][0] == "timm/vit_base_patch16_224.dino"
    # mlbio-epfl/turtle run_turtle.py's default and the paper's headline pair: CLIP ViT-L/14 with DINOv2 ViT-g/14
    assert validated["clustering"]["methods"]["turtle"]["spaces"] == [  # entries normalised to {spec}
        [{"spec": "openclip/ViT-L-14:openai"}, {"spec": "timm/vit_giant_patch14_dinov2.lvd142m"}]]
    # plp-official probes CLIP's image tower before its projection; SSLSDN's centre over teacher_output[:2]
    assert "openclip/ViT-L-14:openai@pre-projection" in [b["spec"] for b in validated["backbones"]]
    assert validated["ood"]["self_distillation"]["centre_rows"] == "first-samples"


@pytest.mark.parametrize("key", ["clustering.methods.temi.datasets", "clustering.upper_bound.datasets"])
def test_dataset_lists_must_name_configured_datasets(default_config, key):
    _set(default_config, key, ["digits", "digits-lt01"])
    with pytest.raises(ConfigError, match=rf"{key} names 'digits-lt01' \(did you mean 'digits-lt10'\?\)"):
        validate_config(default_config, SCHEMA)


def _pair(config, index=0):
    return config["ood"]["pairs"][index]


OOD_MISTAKES = [
    ("overlapping classes", lambda c: _pair(c).update(out={"dataset": "digits", "classes": [4, 5]}),
     ["ood.pairs[0]", "share classes 4", "must not be ID classes"]),
    ("same data on both sides", lambda c: _pair(c).update(out="digits-lt10"), ["share every class"]),
    ("fit split holds the test split", lambda c: _pair(c).update({"in": "digits"}),
     ["ood.pairs[0].in", "split 'all'", "set datasets.digits.split to a training split"]),
    ("labels needed on unlabelled data", lambda c: (c["datasets"]["noise"].update(split="train"),
                                                    _pair(c).update({"in": "noise", "out": "digits"})),
     ["'mahalanobis' needs the ID labels", "dataset 'noise'", "use an unsupervised scorer"]),
    ("zero-shot without a text tower", lambda c: c["ood"]["scorers"].append("zeroshot-msp"),
     ["zeroshot-msp needs a backbone with a text tower", "none of 'pixels' has one"]),
    ("self-distillation without negatives", lambda c: c["ood"].pop("negatives"),
     ["selfdistill trains against shifted negatives", "ood.negatives is empty"]),
    ("negatives from an unknown dataset", lambda c: c["ood"]["negatives"].update(rotations="digits-04-rotatd"),
     ["ood.negatives.rotations names dataset 'digits-04-rotatd'", "did you mean 'digits-04-rotated'"]),
    ("an unknown shift", lambda c: c["datasets"]["digits-04-rotated"].update(shift="rotate45"),
     ["rotate45", "rotate90"]),
    ("unknown scorer", lambda c: c["ood"]["scorers"].append("knn5"), ["ood.scorers", "unknown OOD scorer 'knn5'",
                                                                     "did you mean"]),
    ("unknown attacked scorer", lambda c: c["ood"]["adversarial"]["scorers"].append("mahalanobiss"),
     ["ood.adversarial.scorers", "did you mean 'mahalanobis'"]),
    ("attack on feature vectors", lambda c: (c["datasets"].update(feats={"source": "synthetic", "dims": 64}),
                                             _pair(c).update(out="feats")), ["holds feature vectors"]),
    ("unknown dataset in a pair", lambda c: _pair(c).update(out="nois"), ["ood.pairs[0].out", "did you mean 'noise'"]),
    ("cluster method not configured", lambda c: c["ood"]["clusters"].update(method="kmeanz"),
     ["ood.clusters.method = 'kmeanz'", "did you mean 'kmeans'"]),
    ("duplicate pair names", lambda c: _pair(c, 1).update(name=_pair(c)["name"]), ["two pairs share a name"]),
    ("eval split the source lacks", lambda c: c["ood"].update(eval_split="validation"),
     ["ood.eval_split = 'validation'", "allowed: all, train, test"]),
]


def test_ood_runs_cover_pairs_scorers_and_attacks(default_config):
    from lightning_modules.ood import ood_pairs
    from lightning_modules.workflow.sweep import ood_runs

    config = validate_config(default_config, SCHEMA)
    assert list(ood_pairs(config)) == ["digits04-vs-digits59", "digits04-vs-noise"]
    runs = [run.folder for run in ood_runs(config, {"pixels": {"spec": "pixels"}})]
    assert len(runs) == 2 * (12 + 2 + 2)  # 12 scorers, selfdistill on 2 negatives and 2 attack styles per pair
    assert sum(run.endswith(("/selfdistill-rotations", "/selfdistill-permuted")) for run in runs) == 4
    assert "digits-04/pixels/ood/digits04-vs-noise/knn1-adv-smooth" in runs
    # zero-shot scoring runs on the backbones with a text tower only
    config["ood"]["scorers"].append("zeroshot-msp")
    both = {"pixels": {"spec": "pixels"}, "openclip-vit-b-32": {"spec": "openclip/ViT-B-32"}}
    zeroshot = [run.folder for run in ood_runs(config, both) if run.scorer == "zeroshot-msp"]
    assert zeroshot == ["digits-04/openclip-vit-b-32/ood/digits04-vs-digits59/zeroshot-msp",
                        "digits-04/openclip-vit-b-32/ood/digits04-vs-noise/zeroshot-msp"]
    del default_config["ood"]["pairs"][0]["name"]
    assert list(ood_pairs(default_config))[0] == "digits-04-vs-digits-5-6-7-8-9"


DIFFUSION_MISTAKES = [
    ("image size the UNet cannot downsample", lambda c: c["diffusion"].update(image_size=18, network={"name": "ddpmpp", "channels": [8, 16, 32]}),
     ["diffusion.image_size = 18 cannot be downsampled 2 times", "multiple of 4"]),
    ("unknown denoiser", lambda c: c["diffusion"].update(network={"name": "unet"}),
     ["diffusion.network: unknown diffusion network 'unet'", "allowed: ddpmpp, mlp"]),
    ("classifier features without labels", lambda c: c["diffusion"].update(datasets=["noise"], conditions=["none"]),
     ["'classifier' is trained on labels", "dataset 'noise' has none"]),
    ("one cluster", lambda c: c["diffusion"]["conditions"].append("clusters-kmeans-k1"),
     ["diffusion.conditions[2] = 'clusters-kmeans-k1'", "K = 1", "allowed: 2..N"]),
    ("clusters of an unconfigured method", lambda c: c["diffusion"]["conditions"].append("clusters-kmeens-k10"),
     ["names method 'kmeens'", "did you mean 'kmeans'"]),
    ("unknown condition", lambda c: c["diffusion"]["conditions"].append("labels"), ["unknown diffusion conditioning 'labels'"]),
    ("feature vectors", lambda c: (c["datasets"].update(feats={"source": "synthetic"}),
                                   c["diffusion"].update(datasets=["feats"])), ["holds feature vectors"]),
    ("class conditioning without labels", lambda c: c["diffusion"].update(datasets=["noise"]),
     ["'class' needs labels", "dataset 'noise'"]),
    ("unknown backbone", lambda c: c["diffusion"].update(backbone="pixel"), ["diffusion.backbone = 'pixel'", "did you mean 'pixels'"]),
]


TURTLE_MISTAKES = [
    ("unknown backbone in a space", lambda c: c["clustering"]["methods"]["turtle"].update(spaces=[["pixels", "randm/8"]]),
     ["clustering.methods.turtle.spaces[0][1]", "did you mean 'random'"]),
    ("space not starting with a configured backbone",
     lambda c: c["clustering"]["methods"]["turtle"].update(spaces=[["random/8", "pixels"]]),
     ["spaces[0] starts with 'random/8'", "must be a configured one"]),
    ("spaces on a one-space method", lambda c: c["clustering"]["methods"]["kmeans"].update(spaces=[["pixels", "random/8"]]),
     ["clustering.methods.kmeans", "spaces"]),
]

STAGE_MISTAKES = OOD_MISTAKES + DIFFUSION_MISTAKES + TURTLE_MISTAKES


@pytest.mark.parametrize("mutate,expected", [m[1:] for m in STAGE_MISTAKES], ids=[m[0] for m in STAGE_MISTAKES])
def test_ood_and_diffusion_mistakes_fail_in_one_line_before_any_job(default_config, mutate, expected):
    mutate(default_config)
    with pytest.raises(ConfigError) as raised:
        validate_config(default_config, SCHEMA)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, message


def test_diffusion_runs_cover_conditions_clusters_and_the_bound(default_config):
    from lightning_modules.workflow.sweep import diffusion_runs

    config = validate_config(default_config, SCHEMA)
    assert [run.folder for run in diffusion_runs(config)] == [
        f"digits/diffusion/{c}/seed{s}" for c in ("none", "class", "clusters-kmeans-k5", "clusters-kmeans-k20")
        for s in (0, 1, 2)]
    assert diffusion_runs(config, lambda dataset: 13)[-1].folder == "digits/diffusion/clusters-kmeans-k13/seed2"


def test_imagenet21k_config_dry_run_lists_its_jobs_within_a_minute(tmp_path):
    """config/imagenet21k.yaml with placeholder data roots: the DAG (embed, IVF kNN graphs, k-means and TEMI at
    three K, the bound, selection) is listed by `snakemake -n`, with the memory the config sizes for SLURM."""
    import time

    data = tmp_path / "data" / "imagenet21k"
    (data / "train").mkdir(parents=True)
    (data / "hierarchy.json").write_text("{}")
    text = (REPO / "config" / "imagenet21k.yaml").read_text().replace("data/imagenet21k", str(data))
    config = yaml.safe_load(text)
    config["results_dir"] = str(tmp_path / "results")
    assert config["knn"]["index"] == "ivf"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    done = forks.run(forks.SNAKEMAKE, ["-n", "--configfile", str(tmp_path / "config.yaml")], cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.perf_counter() - started < 60
    listed = done.stdout + done.stderr
    for rule, count in (("embed", 6), ("knn_graph", 6), ("cluster", 36), ("upper_cluster_bound", 2)):
        assert re.search(rf"^{rule}\s+{count}$", listed, re.M), (rule, listed[-1500:])


def test_job_resources_take_the_config_over_the_defaults(default_config):
    from lightning_modules.workflow.sweep import job_resources

    config = validate_config(copy.deepcopy(default_config), SCHEMA)
    assert job_resources(config, "embed") == {"mem_mb": 16000, "runtime": 360}
    default_config["resources"] = {"embed": {"mem_mb": 32000}}
    assert job_resources(validate_config(default_config, SCHEMA), "embed") == {"mem_mb": 32000, "runtime": 360}
    assert job_resources(config, "knn_graph") == {}
    default_config["resources"] = {"embedding": {"mem_mb": 1}}
    with pytest.raises(ConfigError, match=r"unknown key 'resources.embedding' \(did you mean 'embed'\?\); allowed: cluster"):
        validate_config(default_config, SCHEMA)