"""MLflow in one place: run naming, tags, params, metrics, artifacts.

A tracking failure is logged as a warning and never loses a result: the artifacts on disk (metrics.json)
are the source of truth and MLflow mirrors them. MlflowClient is used instead of the fluent API so no
process-global "active run" state is involved.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIES = 5
# MLflow's own HTTP client retries 7 times with exponential backoff (minutes against a server that is
# down); a sweep job should give up on tracking in seconds and keep its result.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
ARTIFACT_TAG = "clusterlab.artifact_path"  # the run's result folder: what the store is reconciled by
# "sweep": the one parent run of a sweep, every other run nests under it; "helper": a run that feeds another
# stage (the clustering behind the cluster-* OOD scorers) and is in no table; table rows carry no role
ROLE_TAG = "clusterlab.role"
PARENT_TAG = "mlflow.parentRunId"
_unavailable: set[str] = set()  # stores that failed in this process: warn once, then skip them


def default_tracking_uri(results_dir: str | Path) -> str:
    from lightning_modules.core.layout import TRACKING_DATABASE

    return f"sqlite:///{Path(results_dir).as_posix()}/{TRACKING_DATABASE}"


def tracking_target(experiment_file: str | Path) -> dict:
    """`{tracking_uri, experiment}` from the file init_tracking wrote: jobs log where the sweep's store is without
    carrying it as a parameter (a new tracking address must not rerun finished jobs)."""
    from lightning_modules.core.io import read_json

    record = read_json(experiment_file)
    return {"tracking_uri": record["tracking_uri"], "experiment": record["experiment"]}


def _with_retries(action: Callable[[], T], what: str) -> T:
    """SQLite under parallel jobs answers 'database is locked' now and then: back off and retry that;
    any other error goes straight to the caller."""
    retries = RETRIES
    for attempt in range(retries):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - transient lock errors are retried, others re-raised
            if attempt == retries - 1 or "locked" not in str(error).lower():
                raise
            wait = 0.5 * 2**attempt
            log.info("%s failed (%s); retrying in %.1f s", what, error, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from lightning_modules.services.tracking_server import CREDENTIALS_ENV, read_credentials

    credentials = os.environ.get(CREDENTIALS_ENV)
    if credentials and tracking_uri.startswith(("http://", "https://")) and "MLFLOW_TRACKING_PASSWORD" not in os.environ:
        os.environ.update(read_credentials(credentials))  # MLflow's client reads them from the environment
    return MlflowClient(tracking_uri=tracking_uri)


def _give_up(tracking_uri: str, what: str, error: Exception) -> None:
    if tracking_uri not in _unavailable:
        log.warning("MLflow tracking at %s failed (%s: %s); results are still written to disk, tracking is "
                    "skipped for the rest of this job", tracking_uri, what, error)
    _unavailable.add(tracking_uri)


def _experiment_id(client, experiment: str, artifact_root: str | None = None) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(experiment, artifact_location=artifact_root)


def _sweep_run_id(client, experiment_id: str) -> str | None:
    found = client.search_runs([experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'", max_results=1)
    return found[0].info.run_id if found else None


def result_runs(client, experiment_id: str, **search) -> list:
    """The experiment's runs that mirror a result (`client.search_runs` keywords), without the sweep's parent."""
    runs = client.search_runs([experiment_id], max_results=50_000, **search)
    return [run for run in runs if run.data.tags.get(ROLE_TAG) != "sweep"]


def _nested(client, experiment_id: str, tags: dict) -> dict:
    """`tags` plus the sweep's parent run (when init_tracking made one), so the UI nests the run under it."""
    parent = _with_retries(lambda: _sweep_run_id(client, experiment_id), "find the sweep run")
    return {**tags, PARENT_TAG: parent} if parent else dict(tags)


def display_name(run_path: str | Path) -> str:
    """The short name a run shows in the MLflow table (`temi k10 s0 · digits/pixels`, `knn1 · digits04-vs-noise ·
    pixels`, `probe classes · digits-04/pixels`, `class s0 · digits diffusion`); its full result folder is the
    ARTIFACT_TAG tag, which reconciliation matches by."""
    from lightning_modules.core.layout import parse

    record = parse(run_path)
    return record.display() if record else "/".join(Path(run_path).parts[-3:])


def init_tracking(tracking_uri: str, experiment: str, artifact_root: str | Path | None = None,
                  sweep: dict | None = None, registration: dict | None = None) -> dict:
    """Create the store, the sweep's experiment and its parent run once, before parallel jobs touch them:
    concurrent first use of a fresh SQLite store crashes in its schema migrations. `sweep` (the config) goes
    on the parent run: its grid as params, the whole of it as `config.yaml`; `registration` (the claims' analysis,
    lightning_modules.analysis.claims.register_analysis) as `claims-registration.json` and its code hash as a param."""
    if artifact_root is not None and not tracking_uri.startswith(("http://", "https://")):
        artifact_root = Path(artifact_root).resolve().as_uri()
    else:
        artifact_root = None  # a tracking server chooses its own artifact store
    try:
        client = _client(tracking_uri)
        experiment_id = _with_retries(lambda: _experiment_id(client, experiment, artifact_root), "create experiment")
        # a model-training experiment (MLflow 3.17's UI also wants ?workflowType=machine_learning in the address to
        # open on the runs table: reporting.mlflow_runs_address)
        _with_retries(lambda: client.set_experiment_tag(experiment_id, "mlflow.experimentKind",
                                                        "custom_model_development"), "tag experiment")
        parent = _with_retries(lambda: _sweep_run_id(client, experiment_id), "find the sweep run")
        if parent is None:
            parent = _with_retries(lambda: client.create_run(experiment_id, run_name=f"sweep {experiment}",
                                                             tags={ROLE_TAG: "sweep"}), "create the sweep run").info.run_id
            if sweep is not None:
                _log_sweep(client, parent, sweep, registration)  # left running: finish_sweep ends it at the end
        return {"tracking_uri": tracking_uri, "experiment": experiment, "experiment_id": experiment_id,
                "sweep_run_id": parent}
    except Exception as error:  # noqa: BLE001 - see module docstring
        _give_up(tracking_uri, "creating the experiment", error)
        return {"tracking_uri": tracking_uri, "experiment": experiment, "error": str(error)}


def _log_sweep(client, run_id: str, sweep: dict, registration: dict | None = None) -> None:
    import tempfile

    import yaml
    from mlflow.entities import Param

    clustering = sweep.get("clustering", {})
    grid = {"datasets": sorted(sweep.get("datasets", {})), "backbones": sweep.get("backbones"),
            "clustering.methods": sorted(clustering.get("methods", {})), "clustering.k": clustering.get("k"),
            "clustering.seeds": clustering.get("seeds"), "ood.scorers": (sweep.get("ood") or {}).get("scorers"),
            "diffusion.conditions": (sweep.get("diffusion") or {}).get("conditions")}
    if registration:
        grid["claims.code_sha256"] = registration["code_sha256"]
    params = [Param(name, str(value)[:6000]) for name, value in grid.items() if value is not None]
    _with_retries(lambda: client.log_batch(run_id, params=params), "log the sweep's grid")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(sweep, sort_keys=False))
        _with_retries(lambda: client.log_artifact(run_id, str(path)), "log the sweep's config")
        if registration:
            path = Path(folder) / "claims-registration.json"
            path.write_text(json.dumps(registration, indent=1, sort_keys=True))
            _with_retries(lambda: client.log_artifact(run_id, str(path)), "log the claims' registration")


def log_sweep_artifacts(tracking_uri: str, experiment: str, paths: Iterable[str | Path], artifact_dir: str) -> None:
    """Files that belong to the whole sweep (a report and its figures) go on its parent run."""
    if tracking_uri in _unavailable:
        return
    try:
        client = _client(tracking_uri)
        experiment_id = _with_retries(lambda: _experiment_id(client, experiment), "find experiment")
        parent = _with_retries(lambda: _sweep_run_id(client, experiment_id), "find the sweep run")
        if parent is None:
            return
        for path in paths:
            _with_retries(lambda path=path: client.log_artifact(parent, str(path), artifact_dir),
                          f"log artifact {path}")
    except Exception as error:  # noqa: BLE001 - see module docstring
        _give_up(tracking_uri, f"logging {artifact_dir} on the sweep run", error)


def finish_sweep(tracking_uri: str, experiment: str, metrics: dict[str, float], description: str) -> dict:
    """End the sweep's parent run now (it started with init_tracking, so its duration is the sweep's; a rerun moves
    its end), with the sweep's headline `metrics` and `description` (the run's note in the UI: headlines and where
    the reports are). Returns the run's id, start and end (ms)."""
    from mlflow.entities import Metric

    if tracking_uri in _unavailable:
        return {}
    try:
        client = _client(tracking_uri)
        experiment_id = _with_retries(lambda: _experiment_id(client, experiment), "find experiment")
        parent = _with_retries(lambda: _sweep_run_id(client, experiment_id), "find the sweep run")
        if parent is None:
            return {}
        now = int(time.time() * 1000)
        logged = [Metric(name, value, now, 0) for name, value in _loggable_metrics(metrics).items()]
        _with_retries(lambda: client.log_batch(parent, metrics=logged), "log the sweep's headlines")
        _with_retries(lambda: client.set_tag(parent, "mlflow.note.content", description), "describe the sweep")
        _with_retries(lambda: client.set_terminated(parent, end_time=now), "finish the sweep run")
        run = _with_retries(lambda: client.get_run(parent), "read the sweep run")
        return {"sweep_run_id": parent, "start_time": run.info.start_time, "end_time": run.info.end_time}
    except Exception as error:  # noqa: BLE001 - see module docstring
        _give_up(tracking_uri, "finishing the sweep run", error)
        return {}


def log_result_artifacts(tracking_uri: str, experiment: str, folder: str | Path, paths: Iterable[str | Path],
                         artifact_dir: str) -> None:
    """Files drawn after a result's run finished (its figures) go on that run, found by its result folder."""
    if tracking_uri in _unavailable:
        return
    try:
        client = _client(tracking_uri)
        experiment_id = _with_retries(lambda: _experiment_id(client, experiment), "find experiment")
        found = _with_retries(lambda: client.search_runs(
            [experiment_id], filter_string=f"tags.`{ARTIFACT_TAG}` = '{folder}'", max_results=1), "find the run")
        if not found:
            log.warning("no MLflow run mirrors %s: its figures stay in the results folder only", folder)
            return
        for path in paths:
            _with_retries(lambda path=path: client.log_artifact(found[0].info.run_id, str(path), artifact_dir),
                          f"log artifact {path}")
    except Exception as error:  # noqa: BLE001 - see module docstring
        _give_up(tracking_uri, f"logging {artifact_dir} of {folder}", error)


def _loggable_metrics(metrics: dict) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None
        and math.isfinite(float(value))
    }


def _flat_params(params: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_params(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def lightning_logger(tracking_uri: str, experiment: str, run_name: str, tags: dict):
    """Lightning's MLFlowLogger for a run's training curves, or None (with a warning) if the store is
    unusable: training goes on without curves rather than failing."""
    from pytorch_lightning.loggers import MLFlowLogger

    if tracking_uri in _unavailable:
        return None
    try:
        client = _client(tracking_uri)
        experiment_id = _with_retries(lambda: _experiment_id(client, experiment), "find experiment")
        tags = _nested(client, experiment_id, {**{k: str(v) for k, v in tags.items()}, ARTIFACT_TAG: str(run_name)})
        logger = MLFlowLogger(experiment_name=experiment, run_name=display_name(run_name), tracking_uri=tracking_uri,
                              tags=tags)
        _with_retries(lambda: logger.run_id, "create run")  # creates the run now, not mid-training
        return logger
    except Exception as error:  # noqa: BLE001 - see module docstring
        _give_up(tracking_uri, f"creating run {run_name}", error)
        return None


def log_run(
    tracking_uri: str, experiment: str, run_name: str, tags: dict, params: dict, metrics: dict,
    artifacts: Iterable[str | Path] = (), run_id: str | None = None,
) -> str | None:
    """Log one finished run (into `run_id` when a logger already created it); returns its run id, or
    None (with a warning) if tracking failed. `run_name` is the run's result folder: the run shows its
    `display_name` and carries the folder as a tag; `tags` are (re)written on the run either way."""
    from mlflow.entities import Metric, Param, RunTag

    if tracking_uri in _unavailable:
        return None
    try:
        client = _client(tracking_uri)
        if run_id is None:
            experiment_id = _with_retries(lambda: _experiment_id(client, experiment), "find experiment")
            run = _with_retries(
                lambda: client.create_run(experiment_id, run_name=display_name(run_name),
                                          tags=_nested(client, experiment_id, {k: str(v) for k, v in tags.items()})),
                "create run",
            )
            run_id = run.info.run_id
        # a logger may have logged some params already (Lightning's hyper-parameters, with its own spelling of
        # a tuple): MLflow refuses to log a param twice with another value, so those stay as they are
        logged = _with_retries(lambda: client.get_run(run_id).data.params, "read params")
        fresh = {k: v for k, v in _flat_params(params).items() if k not in logged}
        now = int(time.time() * 1000)
        _with_retries(
            lambda: client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in _loggable_metrics(metrics).items()],
                params=[Param(k, v) for k, v in fresh.items()],
                tags=[RunTag(k, str(v)) for k, v in {**tags, ARTIFACT_TAG: run_name}.items()],
            ),
            "log batch",
        )
        for path in artifacts:
            _with_retries(lambda: client.log_artifact(run_id, str(path)), f"log artifact {path}")
        _with_retries(lambda: client.set_terminated(run_id), "finish run")
        return run_id
    except Exception as error:  # noqa: BLE001 - see module docstring
        _give_up(tracking_uri, f"logging run {run_name}", error)
        return None


def uses_labels(fit_labels: str | None) -> bool:
    """Whether a result fitted on `fit_labels` used the data's labels: only the ground-truth `classes` do
    (clusters and pseudo-labels are label-free; labels that only score a result are not fitted on)."""
    return fit_labels == "classes"


class TrackedRun:
    """One result's MLflow run, the same way for every stage: named after the result's folder, with training
    curves when the job trains with Lightning (`curves`: `.logger` goes to the Trainer), and finished with the
    record the job wrote: the given metrics and params, and `fit_labels` / `uses_labels` tags saying what the
    result was fitted on (only ground-truth `classes` count as using labels; labels that only score a result
    do not). Tracking failures only warn (see the module docstring)."""

    def __init__(self, tracking_uri: str, experiment: str, folder: str | Path, tags: dict, curves: bool = False):
        self.tracking_uri, self.experiment, self.name, self.tags = tracking_uri, experiment, str(folder), dict(tags)
        self.logger = lightning_logger(tracking_uri, experiment, self.name, self.tags) if curves else None

    def finish(self, record: dict, metrics: Iterable[str], params: dict, artifacts: Iterable[str | Path],
               fit_labels: str | None = None) -> str | None:
        label_tags = {"uses_labels": str(uses_labels(fit_labels)).lower()}
        if fit_labels is not None:
            label_tags["fit_labels"] = fit_labels
        return log_run(self.tracking_uri, self.experiment, self.name, {**self.tags, **label_tags}, params=params,
                       metrics={name: record[name] for name in metrics if name in record}, artifacts=artifacts,
                       run_id=getattr(self.logger, "run_id", None))


# What a run's tags are, read back from its metrics.json (the wildcards the job was run with).
IDENTITY_TAGS = ("dataset", "backbone", "method", "k", "seed", "ood", "scorer", "cond", "source")


def reconcile(tracking_uri: str, experiment: str, metrics_files: Iterable[str | Path]) -> dict:
    """Make the store mirror the results: per metrics.json exactly one FINISHED run named after its folder,
    with every metric and param of the file. Missing runs are created; a run left RUNNING/FAILED by a killed
    job, or finished without some metrics (a tracking failure), is completed; extra runs of one folder are
    deleted (MLflow's soft delete); RUNNING runs whose folder has no result are marked KILLED. Idempotent:
    a second call repairs nothing. Returns what was repaired (or the error, when the store is unreachable)."""
    from collections import defaultdict

    from mlflow.entities import Metric, Param, RunTag, ViewType

    from lightning_modules.core.io import read_json

    repaired: dict = {"created": [], "completed": [], "deleted": [], "killed": []}
    try:
        client = _client(tracking_uri)
        experiment_id = _with_retries(lambda: _experiment_id(client, experiment), "find experiment")
        runs = _with_retries(lambda: result_runs(client, experiment_id, run_view_type=ViewType.ACTIVE_ONLY),
                             "list runs")
        by_path = defaultdict(list)
        for run in runs:
            by_path[run.data.tags.get(ARTIFACT_TAG) or run.info.run_name].append(run)
        wanted = {str(Path(path).parent): Path(path) for path in metrics_files}
        for run_name, path in wanted.items():
            record = read_json(path)
            candidates = sorted(by_path.get(run_name, []), key=lambda r: (r.info.status == "FINISHED", r.info.start_time))
            if candidates:
                keep = candidates[-1]
                for extra in candidates[:-1]:
                    _with_retries(lambda extra=extra: client.delete_run(extra.info.run_id), "delete run")
                    repaired["deleted"].append(run_name)
                run_id, logged_metrics, logged_params = keep.info.run_id, keep.data.metrics, keep.data.params
                finished = keep.info.status == "FINISHED"
            else:
                tags = {key: str(record[key]) for key in IDENTITY_TAGS if record.get(key) is not None}
                tags[ARTIFACT_TAG] = run_name
                tags = _nested(client, experiment_id, tags)
                run_id = _with_retries(lambda tags=tags: client.create_run(experiment_id, run_name=display_name(run_name),
                                                                           tags=tags), "create run").info.run_id
                logged_metrics, logged_params, finished = {}, {}, False
                repaired["created"].append(run_name)
            results = {k: v for k, v in _loggable_metrics(record).items() if k not in IDENTITY_TAGS}
            # a job whose tracking failed left a run with none of its results (its batch is all or nothing); the
            # file's other numbers (sizes, timings) are mirrored too, quietly
            unrecorded = not set(results) & set(logged_metrics)
            metrics = {k: v for k, v in results.items() if k not in logged_metrics}
            params = {k: v for k, v in _flat_params(record.get("params") or {}).items() if k not in logged_params}
            if metrics or params or not finished:
                now = int(time.time() * 1000)
                _with_retries(lambda: client.log_batch(
                    run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                    params=[Param(k, v) for k, v in params.items()], tags=[RunTag(ARTIFACT_TAG, run_name)]),
                    "log batch")
                _with_retries(lambda: client.set_terminated(run_id, "FINISHED"), "finish run")
                if candidates and (unrecorded or not finished):
                    repaired["completed"].append(run_name)
        for run_name, candidates in by_path.items():
            if run_name in wanted:
                continue
            for run in candidates:
                if run.info.status == "RUNNING":
                    _with_retries(lambda run=run: client.set_terminated(run.info.run_id, "KILLED"), "mark killed")
                    repaired["killed"].append(run_name)
    except Exception as error:  # noqa: BLE001 - see module docstring: tracking never fails the sweep
        _give_up(tracking_uri, "reconciling the store", error)
        repaired["error"] = str(error)
    if any(repaired[key] for key in ("created", "completed", "deleted", "killed")):
        log.info("tracking store repaired: %s", {k: len(v) for k, v in repaired.items() if isinstance(v, list)})
    return repaired
