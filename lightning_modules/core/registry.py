"""A registry per plug-in kind: names map to lazily imported objects (timm-style), so listing and
checking names costs nothing and only the job that uses a plug-in imports its dependencies.

A plug-in is one file and one register line. What the workflow needs to know of it without running it sits on the
register line (`info`: uses labels? needs the kNN graph? a small job?); its settings sit in its own file, as literal
class (or module) attributes that `declarations` reads from the source without importing it — every job parses
the Snakefile, which validates the config, and must not pay a plug-in's torch import for that:

    class ToyMethod:
        SETTINGS_BASE = "grid"  # a settings group of config/schema.yaml's $defs it extends (optional)
        SETTINGS = {"spread": {"type": "number", "minimum": 0, "default": 1.0}}  # JSON schema, defaults included
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DECLARED = ("SETTINGS", "SETTINGS_BASE")  # the literal attributes a plug-in may declare in its file


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists what is allowed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def did_you_mean(name: str, allowed) -> str:
    by_lower_case = {str(a).lower(): str(a) for a in allowed}  # `kNN` is close to `knn`
    close = difflib.get_close_matches(str(name).lower(), list(by_lower_case), n=1)
    return f" (did you mean '{by_lower_case[close[0]]}'?)" if close else ""


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:attribute", imported on first use
    info: dict = field(default_factory=dict)

    def load(self) -> Any:
        module_name, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    @property
    def declared(self) -> dict:
        """The plug-in's literal declarations (DECLARED), read from its source without importing it."""
        return declarations(self.target)


@functools.cache
def declarations(target: str) -> dict:
    """`SETTINGS` and `SETTINGS_BASE` of "package.module:attribute": the attribute's own class body where it is a
    class defined in that module, else the module's top level. Values must be literals (ast.literal_eval)."""
    module_name, _, attribute = target.partition(":")
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"plug-in module '{module_name}' (of {target}) not found")
    tree = ast.parse(Path(spec.origin).read_text())
    body = next((node.body for node in tree.body if isinstance(node, ast.ClassDef) and node.name == attribute),
                tree.body)
    found = {}
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in DECLARED:
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, **info) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = Entry(name, target, info)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"allowed: {', '.join(self.names())}"
            ) from None

    def get(self, name: str) -> Any:
        return self.entry(name).load()
