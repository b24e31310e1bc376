"""The locked environment: `make lock` writes one hash-pinned requirements file per accelerator with uv, and the conda
files' pip lines take their versions from the CPU lock. `make install` installs from a lock (pip --require-hashes).

    python envs/lock.py compile   # re-resolve both locks, keeping every pin pyproject.toml still allows
    python envs/lock.py check     # exit 1 when pyproject.toml, the locks and the conda files disagree
    python envs/lock.py check --installed cpu   # ... or this environment and the cpu lock
"""

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"
# faiss comes from exactly one of these extras (both wheels write the module `faiss`); the others go in both
ACCELERATORS = ("cpu", "gpu")
SHARED_EXTRAS = ("test", "server", "docs")
# conda files target the x86-64 Linux nodes a lab's GPU cluster has
CONDA_TARGET = {"platform_machine": "x86_64", "sys_platform": "linux", "python_version": "3.11",
                "python_full_version": "3.11.7"}


def lock_path(accelerator: str) -> Path:
    return ENVS / f"requirements-{accelerator}.txt"


def compile_command(accelerator: str) -> list[str]:
    """uv's universal resolution (Linux on x86-64 and aarch64, pyproject's [tool.uv] environments) with every wheel's
    hash; an existing lock's pins are kept unless pyproject.toml no longer allows them."""
    extras = [flag for extra in (accelerator, *SHARED_EXTRAS) for flag in ("--extra", extra)]
    return ["uv", "pip", "compile", "--quiet", "pyproject.toml", *extras, "--universal", "--python-version", "3.11",
            "--generate-hashes", "-o", str(lock_path(accelerator).relative_to(REPO))]


def read_lock(path: Path) -> list[Requirement]:
    """The pins of a lock file (`name==version ; marker`), hashes and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins = []
    for line in text.splitlines():
        line = re.sub(r"\s--hash=\S+", "", line.split("#")[0]).strip()
        if line:
            pins.append(Requirement(line))
    return pins


def pins_for(path: Path, environment: dict[str, str] | None = None) -> dict[str, str]:
    """name -> version of the pins whose marker holds in `environment` (this interpreter's by default)."""
    environment = {**default_environment(), **(environment or {})}
    pinned = {}
    for pin in read_lock(path):
        if pin.marker is None or pin.marker.evaluate(environment):
            pinned[canonicalize_name(pin.name)] = str(pin.specifier).removeprefix("==")
    return pinned


def pyproject_requirements(accelerator: str) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + [r for e in (accelerator, *SHARED_EXTRAS)
                                                                for r in extras[e]]]


def disagreements(accelerator: str, environment: dict[str, str] | None = None) -> list[str]:
    """pyproject.toml's requirements (for the accelerator) that the lock leaves unpinned or pins outside their range."""
    environment = {**default_environment(), **(environment or {})}
    pinned = pins_for(lock_path(accelerator), environment)
    problems = []
    for requirement in pyproject_requirements(accelerator):
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{lock_path(accelerator).name}: {requirement} is not pinned (run make lock)")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{lock_path(accelerator).name}: {requirement.name}=={version} but pyproject.toml asks "
                            f"{requirement} (run make lock)")
    return problems


def conda_pip_lines(env_file: Path) -> list[str]:
    import yaml

    env = yaml.safe_load(env_file.read_text())
    return next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))


def pin_conda_file(env_file: Path) -> str:
    """The conda file's text with each pip line pinned to the CPU lock's version for CONDA_TARGET."""
    pinned = pins_for(lock_path("cpu"), CONDA_TARGET)
    text = env_file.read_text()
    for line in conda_pip_lines(env_file):
        requirement = Requirement(line)
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        pin = f"{requirement.name}{extras}=={pinned[canonicalize_name(requirement.name)]}"
        text = re.sub(rf"(?m)^(\s*- ){re.escape(line)}$", lambda m: m.group(1) + pin, text)
    return text


def installed_disagreements(accelerator: str) -> list[str]:
    """Packages of this interpreter's environment whose version is not the lock's."""
    problems = []
    for name, version in pins_for(lock_path(accelerator)).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}=={version} is locked but not installed")
            continue
        if installed != version:
            problems.append(f"{name} {installed} installed, {version} locked")
    return problems


def check() -> list[str]:
    problems = [p for accelerator in ACCELERATORS for machine in ("x86_64", "aarch64")
                for p in disagreements(accelerator, {"platform_machine": machine, "sys_platform": "linux"})]
    for env_file in sorted(ENVS.glob("*.yaml")):
        if pin_conda_file(env_file) != env_file.read_text():
            problems.append(f"{env_file.name}: pip lines differ from requirements-cpu.txt (run make lock)")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["compile", "check"])
    parser.add_argument("--installed", choices=ACCELERATORS, help="also compare this environment with that lock")
    arguments = parser.parse_args()
    if arguments.command == "compile":
        uv = Path(sys.executable).with_name("uv")
        for accelerator in ACCELERATORS:
            subprocess.run([str(uv), *compile_command(accelerator)[1:]], cwd=REPO, check=True)
        for env_file in sorted(ENVS.glob("*.yaml")):
            env_file.write_text(pin_conda_file(env_file))
    problems = check() + (installed_disagreements(arguments.installed) if arguments.installed else [])
    for problem in problems:
        print(problem, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
