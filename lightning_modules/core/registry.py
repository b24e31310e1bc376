"""A registry per plug-in kind: names map to lazily imported objects (timm-style), so listing and
checking names costs nothing and only the job that uses a plug-in imports its dependencies."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any


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
