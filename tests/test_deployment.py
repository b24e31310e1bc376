"""The locked environment (envs/requirements-*.txt), the conda files pinned from it, the one package that provides
faiss, and every rule with a script naming a conda environment."""

import importlib.metadata
import importlib.util
import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
spec = importlib.util.spec_from_file_location("envs_lock", REPO / "envs" / "lock.py")
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)


def test_the_locks_pin_every_requirement_of_pyproject_within_its_range_on_both_machines():
    assert lock.check() == []


def test_a_requirement_the_lock_does_not_satisfy_is_named(tmp_path, monkeypatch):
    pyproject = (REPO / "pyproject.toml").read_text().replace('"scipy>=1.11"', '"scipy>=99"')
    monkeypatch.setattr(lock, "REPO", tmp_path)
    (tmp_path / "pyproject.toml").write_text(pyproject)
    problems = lock.disagreements("cpu", {"platform_machine": "x86_64", "sys_platform": "linux"})
    assert len(problems) == 1 and "scipy==" in problems[0] and "scipy>=99" in problems[0] and "make lock" in problems[0]


def test_this_environment_is_the_lock():
    accelerator = "gpu" if "faiss-gpu" in faiss_owners() else "cpu"
    assert lock.installed_disagreements(accelerator) == []


def test_the_lock_reader_keeps_markers_and_drops_hashes(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# header\ntorch==2.9.1 ; platform_machine == 'aarch64' \\\n    --hash=sha256:ab \\\n"
                    "    --hash=sha256:cd\n    # via clusterlab\ntorch==2.14.1 ; platform_machine == 'x86_64' \\\n"
                    "    --hash=sha256:ef\n")
    assert lock.pins_for(path, {"platform_machine": "aarch64"}) == {"torch": "2.9.1"}
    assert lock.pins_for(path, {"platform_machine": "x86_64"}) == {"torch": "2.14.1"}


def faiss_owners() -> list[str]:
    return importlib.metadata.packages_distributions()["faiss"]


def test_one_installed_package_provides_faiss():
    owners = faiss_owners()
    assert len(owners) == 1 and owners[0] in {"faiss-cpu", "faiss-gpu"}, owners


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_no_lock_installs_both_faiss_packages(machine):
    for accelerator in lock.ACCELERATORS:
        pinned = lock.pins_for(lock.lock_path(accelerator), {"platform_machine": machine, "sys_platform": "linux"})
        assert len({"faiss-cpu", "faiss-gpu"} & set(pinned)) == 1, (accelerator, machine)
    gpu = lock.pins_for(lock.lock_path("gpu"), {"platform_machine": "x86_64", "sys_platform": "linux"})
    assert "faiss-gpu" in gpu or machine == "aarch64"


def pyproject_names() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(r).name) for r in project["dependencies"] + project["optional-dependencies"]["cpu"]}


@pytest.mark.parametrize("env_file", ENVS, ids=[p.name for p in ENVS])
def test_env_pip_lines_are_pyproject_requirements_at_the_locked_version(env_file):
    pinned = lock.pins_for(lock.lock_path("cpu"), lock.CONDA_TARGET)
    for line in lock.conda_pip_lines(env_file):
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pyproject_names(), f"{env_file.name}: {line} is not a requirement of pyproject.toml"
        assert str(requirement.specifier) == f"=={pinned[name]}", f"{env_file.name}: {line}, the lock has {pinned[name]}"
    env = yaml.safe_load(env_file.read_text())
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python="))
    minimum = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"].lstrip(">=")
    assert Version(python.split("=")[1]) >= Version(minimum), f"{env_file.name}: {python}, pyproject needs {minimum}"


def test_compute_env_holds_every_runtime_requirement_but_the_report_tools():
    compute = {canonicalize_name(Requirement(r).name) for r in lock.conda_pip_lines(REPO / "envs" / "compute.yaml")}
    reporting_only = {"seaborn", "matplotlib", "papermill", "nbconvert", "nbformat", "ipykernel"}
    missing = pyproject_names() - compute - reporting_only - {"snakemake-executor-plugin-slurm",
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
