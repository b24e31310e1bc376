"""The tutorials run as written: every code block of a page, in order, in a copy of the project (Python blocks with
this environment's Python, shell blocks with bash, a block with a file name written to that file). A tutorial
that no longer works fails here.

Why not mktestdocs or pytest-markdown-docs: both run each page's Python blocks in this process; the tutorials also
write files and run `make`, in the order a reader does, in a folder of their own."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, code_blocks, project_copy

TUTORIALS = REPO / "docs" / "tutorials"
RUN = {"python": [sys.executable, "-c"], "bash": ["bash", "-euo", "pipefail", "-c"]}


def tutorial_project(folder: Path) -> Path:
    """A copy of the project a reader's commands work in: the code, the Makefile and this installed environment
    (the copies keep their times, so `make` finds the environment up to date)."""
    copy = project_copy(folder)
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(REPO / name, copy / name)
    (copy / ".venv").symlink_to(REPO / ".venv")
    return copy


def run_page(page: Path, folder: Path) -> None:
    environment = {**os.environ, "PYTHONPATH": str(folder)}
    for number, (language, title, text) in enumerate(code_blocks(page), start=1):
        if title:
            (folder / title).parent.mkdir(parents=True, exist_ok=True)
            (folder / title).write_text(text)
        elif language in RUN:
            done = subprocess.run([*RUN[language], text], cwd=folder, env=environment, capture_output=True,
                                  text=True, timeout=900)
            assert done.returncode == 0, f"{page.name}, block {number} ({language}):\n{done.stdout[-2000:]}\n" \
                                         f"{done.stderr[-3000:]}"


@pytest.mark.parametrize("page", ["own-features.md", "own-images.md"])
def test_the_tutorial_runs_as_written(page, tmp_path):
    run_page(TUTORIALS / page, tutorial_project(tmp_path))
