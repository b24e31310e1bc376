"""Debian packages a test needs (SLURM, Chromium), installed with apt-get where missing: the tests that need
them skip with the one-line reason where that cannot be done."""

from __future__ import annotations

import os
import subprocess


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
