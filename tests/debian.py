"""What a test needs from the machine (Debian packages: SLURM, Chromium, WordNet; root; a tmpfs): packages are
installed with apt-get where missing. Where a set-up cannot be done the test skips with the one-line reason, and
under CI (`CI=true`, which .ci/run sets) it fails naming the step: CI cannot go green by skipping."""

from __future__ import annotations

import os
import subprocess

import pytest


def unavailable(step: str) -> None:
    """A set-up step failed: skip with `step` as the reason here; fail under CI."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"set-up failed under CI: {step}", pytrace=False)
    pytest.skip(step)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"{what} needs root (CI runs as root)")


def apt_install(packages, what: str, timeout: int = 900) -> str | None:
    """Install `packages`; None when done, else why not (`what` names them in the reason)."""
    if os.geteuid() != 0:
        return f"{what} is not installed and installing it with apt-get needs root"
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(install, capture_output=True, text=True, timeout=timeout, env=environment)
    if result.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=timeout, env=environment)
        result = subprocess.run(install, capture_output=True, text=True, timeout=timeout, env=environment)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"apt-get could not install {what} ({last})"
    return None
