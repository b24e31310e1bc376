"""The conda environment files agree with pyproject.toml, and every rule with a script names one."""

import re
import tomllib

import pytest
import yaml
from packaging.version import Version

from conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def pyproject_requirements() -> dict[str, str]:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    x86 = [d.split(";")[0].strip() for d in dependencies if "aarch64" not in d]  # conda envs target x86_64 nodes
    return {re.split(r"[<>=!~ []", requirement)[0].lower(): requirement for requirement in x86}


@pytest.mark.parametrize("env_file", ENVS, ids=[p.name for p in ENVS])
def test_env_pip_lines_are_pyproject_requirements(env_file):
    env = yaml.safe_load(env_file.read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    known = pyproject_requirements()
    for requirement in pip:
        name = re.split(r"[<>=!~ []", requirement)[0].lower()
        assert known.get(name) == requirement, f"{env_file.name}: '{requirement}' but pyproject.toml has '{known.get(name)}'"
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python="))
    minimum = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"].lstrip(">=")
    assert Version(python.split("=")[1]) >= Version(minimum), f"{env_file.name}: {python}, pyproject needs {minimum}"


def test_compute_env_holds_every_runtime_requirement_but_the_report_tools():
    compute = {re.split(r"[<>=!~ []", r)[0].lower() for r in yaml.safe_load((REPO / "envs" / "compute.yaml").read_text())
               ["dependencies"][-1]["pip"]}
    reporting_only = {"seaborn", "matplotlib", "papermill", "nbconvert", "nbformat", "ipykernel"}
    missing = set(pyproject_requirements()) - compute - reporting_only - {"snakemake-executor-plugin-slurm",
                                                                         "snakemake-logger-plugin-rich"}
    assert not missing


def test_every_scripted_rule_names_a_conda_environment():
    for rule_file in (REPO / "workflow" / "rules").glob("*.smk"):
        for rule in re.split(r"\n(?=(?:rule|checkpoint) )", rule_file.read_text()):
            if "script:" in rule:
                match = re.search(r'conda:\s*\n\s*"\.\./\.\./envs/(\w+)\.yaml"', rule)
                assert match and (REPO / "envs" / f"{match.group(1)}.yaml").exists(), rule.splitlines()[0]


def slurm_profile(monkeypatch, **environment):
    import yte

    for name in ("CLUSTERLAB_SLURM_PARTITION", "CLUSTERLAB_SLURM_ACCOUNT", "CLUSTERLAB_GPU_PARTITION",
                 "CLUSTERLAB_GPUS_PER_JOB", "CLUSTERLAB_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with open(REPO / "workflow" / "profiles" / "slurm" / "config.yaml") as profile:
        return yte.process_yaml(profile, require_use_yte=True)


def test_slurm_profile_asks_gpus_for_the_gpu_stages_and_nothing_site_specific(monkeypatch):
    profile = slurm_profile(monkeypatch)
    assert profile["executor"] == "slurm" and profile["rerun-incomplete"] is True
    assert profile["config"]["tracking_uri"] == "http://127.0.0.1:5000"
    assert "slurm_partition" not in profile["default-resources"] and "slurm_account" not in profile["default-resources"]
    resources = profile["set-resources"]
    assert resources["embed"]["gpu"] == 1 and resources["upper_cluster_bound"]["gpu"] == 1
    assert eval(resources["cluster"]["gpu"], {"wildcards": type("W", (), {"method": "temi"})}) == 1
    assert eval(resources["cluster"]["gpu"], {"wildcards": type("W", (), {"method": "kmeans"})}) == 0
    assert "knn_graph" not in resources and "ood_score" not in resources


def test_slurm_profile_takes_site_settings_from_the_environment(monkeypatch):
    profile = slurm_profile(monkeypatch, CLUSTERLAB_SLURM_PARTITION="all", CLUSTERLAB_GPU_PARTITION="a100",
                            CLUSTERLAB_SLURM_ACCOUNT="lab", CLUSTERLAB_GPUS_PER_JOB="0",
                            CLUSTERLAB_TRACKING_URI="http://tracking:5000")
    # quoted, so Snakemake does not evaluate `all` as Python's built-in
    assert profile["default-resources"]["slurm_partition"] == "'all'"
    assert profile["default-resources"]["slurm_account"] == "'lab'"
    # memory and time come from the rules (resources.<rule> in config), so a config can size them for its data
    assert profile["set-resources"]["embed"] == {"gpu": 0, "slurm_partition": "'a100'"}
    assert profile["config"]["tracking_uri"] == "http://tracking:5000"
