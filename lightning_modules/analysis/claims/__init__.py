"""The claims stage: the papers' findings tested over a sweep's tables (ledger.py: the tests, the verdicts,
`tables/claims.parquet`). This module is what the Snakefile and the config check read: it imports nothing heavy.

Pre-registration: the sweep's first job (init_tracking) registers the analysis — the claims settings and the hash
of the code that tests them — before any result exists, once per results folder; the claims job compares the
analysis it runs with the registered one, and its report opens with a banner when they differ."""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from lightning_modules.core.project import ROOT, SCHEMA_FILE

# the code whose change changes a verdict: the findings and the statistics they use
ANALYSIS_CODE = (Path(__file__).with_name("ledger.py"), ROOT / "lightning_modules" / "metrics" / "stats.py")


def _images(dataset: dict) -> dict:
    """What decides a dataset's images and labels, without its class imbalance and its evaluation-only coarse
    groups: an imbalanced variant and its balanced dataset are equal here."""
    return {key: value for key, value in dataset.items() if key not in ("imbalance", "coarse_groups")}


def dataset_roles(config: dict) -> dict:
    """What the findings need to know about each dataset of a (validated) config: which dataset an imbalanced one
    is a variant of (same source, split and classes without `imbalance`), which are marked easy or largest
    (`claims.easy_datasets`, `claims.largest_datasets`), the chance level of a second cluster's coarse class."""
    claims = config.get("claims") or {}
    datasets = config["datasets"]
    roles = {}
    for name, dataset in datasets.items():
        role = {"easy": name in claims.get("easy_datasets", []), "largest": name in claims.get("largest_datasets", [])}
        if dataset.get("imbalance"):
            role["imbalanced_of"] = next((other for other, entry in datasets.items()
                                          if other != name and _images(entry) == _images(dataset)), None)
        groups = dataset.get("coarse_groups")
        if groups:  # a random second cluster's coarse class is right with probability sum of squared group shares
            sizes = [len(members) for members in groups.values()]
            role["coarse_chance"] = sum((size / sum(sizes)) ** 2 for size in sizes)
        roles[name] = role
    return {"datasets": roles}


def claims_context(config: dict) -> dict:
    """The context the findings read, from a validated config: the datasets' roles, the backbone whose clusters
    condition the diffusion runs (C8 matches its clustering runs) and the declared margins."""
    from lightning_modules.core.naming import backbone_slug
    from lightning_modules.diffusion import diffusion_backbone

    return {**dataset_roles(config), "diffusion_backbone": backbone_slug(diffusion_backbone(config)["spec"]),
            "margins": dict((config.get("claims") or {}).get("margins") or {})}


@functools.cache
def default_margins() -> dict:
    """The findings' margins as the schema declares them (config/schema.yaml, claims.margins): a ledger run without
    a config's context reads these."""
    import yaml

    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    margins = schema["properties"]["claims"]["properties"]["margins"]["properties"]
    return {name: entry["default"] for name, entry in margins.items()}


def analysis(config: dict) -> dict:
    """What decides the verdicts besides the results: the claims settings and the SHA-256 of the ledger's code."""
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in ANALYSIS_CODE)).hexdigest()
    return {"claims": config.get("claims") or {}, "code_sha256": digest}


def register_analysis(path: str | Path, config: dict, results_exist: bool) -> dict:
    """Write the analysis with the time to `path` unless a registration is there already (the first one stands);
    `results_exist` records that results were written before it. Returns the registration in force."""
    path = Path(path)
    if path.exists():
        return json.loads(path.read_text())
    registration = {**analysis(config), "registered_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "after_results": bool(results_exist)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(registration, indent=1, sort_keys=True))
    return registration


def registration_state(path: str | Path, config: dict) -> dict:
    """{registered_at, state}: 'pre-registered' (the analysis now is the one registered before any result),
    'changed after results', 'registered after results' or 'not registered'."""
    path = Path(path)
    if not path.exists():
        return {"registered_at": "", "state": "not registered"}
    registered = json.loads(path.read_text())
    now = json.loads(json.dumps(analysis(config)))  # as it reads back from JSON
    if {key: registered.get(key) for key in now} != now:
        state = "changed after results"
    else:
        state = "registered after results" if registered.get("after_results") else "pre-registered"
    return {"registered_at": registered.get("registered_at", ""), "state": state}


def check_claims(config: dict) -> None:
    """The claims section names configured datasets."""
    from lightning_modules.core.checks import known_datasets

    for key in ("easy_datasets", "largest_datasets"):
        known_datasets(config, (config.get("claims") or {}).get(key, []), f"claims.{key}")
