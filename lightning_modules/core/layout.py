"""The results layout in one place: every kind of result is a small record whose folder under the results
directory is its `FOLDER` pattern. Rules take their output patterns from here (`Record.pattern(file)`, with
Snakemake's `{wildcards}`: the record's fields), the grid lists records, and tables, tracking and the reports
read a record back from a path (`parse`); nothing else builds or splits a results path.

A record's fields are its identity (and its Snakemake wildcards): `ClusteringRun("digits", "pixels", "kmeans",
10, 0).folder == "digits/pixels/clusters/kmeans/k10/seed0"`. Imports nothing heavy (the Snakefile reads it).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lightning_modules.core.naming import SLUG_PATTERN

# what each field may hold, in a path and as a Snakemake wildcard (any other: a slug); the workflow narrows the fields
# that name plug-ins (a diffusion condition, a probe's label source) to their registries' names
FIELD_PATTERNS = {
    "backbone": rf"{SLUG_PATTERN}(?:\+{SLUG_PATTERN})*",  # `a+b`: a multi-space clustering setting
    "k": r"\d+",
    "seed": r"\d+",
    "style": r"[a-z0-9]+",
}
INTEGER_FIELDS = ("k", "seed")

# files of the whole sweep (relative to the results folder)
TRACKING_EXPERIMENT = "tracking/experiment.json"  # written once before any job logs: the tracking target
TRACKING_RECONCILED = "tracking/reconciled.json"
TRACKING_SWEEP = "tracking/sweep.json"  # the sweep's end: its headline metrics, as logged on its MLflow parent run
# the claims' analysis as registered by the sweep's first job, before any result (written once; never a rule output,
# which Snakemake would delete before rerunning the job)
CLAIMS_REGISTRATION = "tracking/claims-registration.json"
ARTIFACT_STORE = "mlartifacts"
TRACKING_DATABASE = "mlflow.db"
LOGS = "logs"


@dataclass(frozen=True)
class Record:
    FOLDER: ClassVar[str]

    @classmethod
    def pattern(cls, name: str = "") -> str:
        """The record's folder (or a file `name` in it) with its fields as `{wildcards}`."""
        return f"{cls.FOLDER}/{name}" if name else cls.FOLDER

    @property
    def folder(self) -> str:
        return self.FOLDER.format(**dataclasses.asdict(self))

    def file(self, name: str) -> str:
        return f"{self.folder}/{name}"

    @classmethod
    @functools.cache  # per record kind: parse() tries every kind on every path
    def _regex(cls) -> re.Pattern:
        pattern, at = "", 0
        for match in re.finditer(r"\{(\w+)\}", cls.FOLDER):
            field = match.group(1)
            pattern += re.escape(cls.FOLDER[at:match.start()]) + f"(?P<{field}>{FIELD_PATTERNS.get(field, SLUG_PATTERN)})"
            at = match.end()
        return re.compile(rf"(?:^|/){pattern}{re.escape(cls.FOLDER[at:])}$")

    @classmethod
    def from_folder(cls, folder: str) -> Record | None:
        match = cls._regex().search(folder)
        if match is None:
            return None
        return cls(**{name: int(value) if name in INTEGER_FIELDS else value for name, value in match.groupdict().items()})

    def display(self) -> str:
        """The short name a run shows in the MLflow table."""
        return self.folder


@dataclass(frozen=True)
class Embeddings(Record):
    FOLDER = "{dataset}/{backbone}/embeddings"  # files `{split}.npy`, `{split}.labels.npy`, `{split}.meta.json`
    dataset: str
    backbone: str


@dataclass(frozen=True)
class KnnGraph(Record):
    FOLDER = "{dataset}/{backbone}/knn"  # files `{split}.k{n}.npy`, `.dist.npy`, `.meta.json`
    dataset: str
    backbone: str


@dataclass(frozen=True)
class ClusteringRun(Record):
    FOLDER = "{dataset}/{backbone}/clusters/{method}/k{k}/seed{seed}"
    dataset: str
    backbone: str
    method: str
    k: int
    seed: int

    @property
    def setting(self) -> tuple[str, str]:
        return self.dataset, self.backbone

    def display(self) -> str:
        return f"{self.method} k{self.k} s{self.seed} · {self.dataset}/{self.backbone}"


@dataclass(frozen=True)
class ClusterBound(Record):
    FOLDER = "{dataset}/{backbone}/clusters"  # file `bound.json`
    dataset: str
    backbone: str

    def display(self) -> str:
        return f"cluster bound · {self.dataset}/{self.backbone}"


@dataclass(frozen=True)
class Selection(Record):
    FOLDER = "{dataset}/{backbone}/selection"  # file `selection.json`
    dataset: str
    backbone: str


@dataclass(frozen=True)
class ClusterFigures(Record):
    FOLDER = "{dataset}/{backbone}/figures"  # the selected run's `gallery.png`, `matrix.png`, `map.png`, `gallery.json`
    dataset: str
    backbone: str


@dataclass(frozen=True)
class EmbeddingMap(Record):
    FOLDER = "{dataset}/{backbone}/map"  # files `{split}.npy` (2-D coordinates), `{split}.rows.npy` (their rows)
    dataset: str
    backbone: str


@dataclass(frozen=True)
class OodProbe(Record):
    FOLDER = "{dataset}/{backbone}/ood/probes/{source}"
    dataset: str
    backbone: str
    source: str

    def display(self) -> str:
        return f"probe {self.source} · {self.dataset}/{self.backbone}"


@dataclass(frozen=True)
class OodAttack(Record):
    FOLDER = "{dataset}/{backbone}/ood/{ood}/attacks/{style}"
    dataset: str
    backbone: str
    ood: str
    style: str


@dataclass(frozen=True)
class OodRun(Record):
    FOLDER = "{dataset}/{backbone}/ood/{ood}/{scorer}"
    dataset: str
    backbone: str
    ood: str
    scorer: str

    def display(self) -> str:
        return f"{self.scorer} · {self.ood} · {self.backbone}"


@dataclass(frozen=True)
class DiffusionClassifier(Record):
    FOLDER = "{dataset}/diffusion/classifier"
    dataset: str


@dataclass(frozen=True)
class DiffusionRun(Record):
    FOLDER = "{dataset}/diffusion/{cond}/seed{seed}"
    dataset: str
    cond: str
    seed: int

    def display(self) -> str:
        return f"{self.cond} s{self.seed} · {self.dataset} diffusion"


@dataclass(frozen=True)
class Table(Record):
    FOLDER = "tables"  # files `{name}.parquet`


@dataclass(frozen=True)
class Report(Record):
    FOLDER = "reports"  # files `{name}.ipynb`, `{name}.html`


# the order `parse` tries them: a folder that fits two patterns (a probe's `ood/probes/<source>` also fits an OOD
# run's `ood/<pair>/<scorer>`) is the first's
RECORDS = (OodProbe, OodAttack, OodRun, DiffusionClassifier, DiffusionRun, ClusteringRun, ClusterBound, Selection,
           ClusterFigures, EmbeddingMap, KnnGraph, Embeddings)


def parse(path: str | Path) -> Record | None:
    """The record a result folder (or a file in it) belongs to, or None: `.../digits/pixels/clusters/kmeans/k10/
    seed0/metrics.json` -> ClusteringRun("digits", "pixels", "kmeans", 10, 0)."""
    path = Path(path).as_posix()
    for candidate in (path, path.rsplit("/", 1)[0]):
        for kind in RECORDS:
            record = kind.from_folder(candidate)
            if record is not None:
                return record
    return None


def log_pattern(rule: str, kind: type[Record] | None = None, name: str = "") -> str:
    """A rule's log, relative to the results folder, with Snakemake's {wildcards}: `logs/<rule>/<kind's folder>
    [/<name>].log` (`log_pattern("cluster", ClusteringRun)` -> `logs/cluster/{dataset}/{backbone}/clusters/{method}/
    k{k}/seed{seed}.log`), or `logs/<rule>[/<name>].log` for a rule of the whole sweep."""
    return "/".join([LOGS, rule, *([kind.FOLDER] if kind else []), *([name] if name else [])]) + ".log"


def wildcard_constraints(narrowed: dict[str, str] | None = None) -> dict[str, str]:
    """The Snakefile's wildcard constraints: every record field's pattern, `narrowed` where given."""
    fields = {field.name for kind in RECORDS for field in dataclasses.fields(kind)}
    patterns = {**FIELD_PATTERNS, **(narrowed or {})}
    return {name: patterns.get(name, SLUG_PATTERN) for name in sorted(fields)}
