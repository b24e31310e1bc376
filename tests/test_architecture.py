"""The house's import graph: no circles, nothing imported sideways or back up (lightning_modules.LAYERS)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import lightning_modules
from lightning_modules import LAYERS

PACKAGE = Path(lightning_modules.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (at any depth of the file: a function's import is an arrow too)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target != "lightning_modules":
                    graph[name].add(target)
    return graph


def floor(module: str) -> tuple[int, str]:
    """(floor, package) of a module: `lightning_modules.ood.knn` -> (5, "ood")."""
    package = module.split(".")[1]
    return next(level for level, packages in enumerate(LAYERS) if package in packages), package


def test_every_module_lives_on_a_floor():
    floors = {package for packages in LAYERS for package in packages}
    loose = sorted(name for name in import_graph() if name != "lightning_modules" and name.split(".")[1] not in floors)
    assert loose == [], f"modules on no floor of lightning_modules.LAYERS: {loose}"


def test_no_circles_and_nothing_imported_sideways_or_up():
    graph = import_graph()
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming a circle
    wrong = []
    for source, target in ((source, target) for source, targets in graph.items() for target in targets):
        (source_floor, source_package), (target_floor, target_package) = floor(source), floor(target)
        if source_package != target_package and target_floor >= source_floor:
            wrong.append(f"{source} -> {target}")
    assert wrong == [], "imports sideways or back up:\n" + "\n".join(wrong)
