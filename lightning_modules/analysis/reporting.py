"""Report notebooks: a papermill template (a cell tagged `parameters`) executed on a stage's table, then
exported to a self-contained HTML page (plots embedded) with nbconvert."""

from __future__ import annotations

import base64
import logging
import re
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


def report_title(notebook) -> str:
    """The first markdown heading of the notebook ("Clustering report"), or "clusterlab report"."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return "clusterlab report"


def render_report(template: str | Path, out_notebook: str | Path, out_html: str | Path, parameters: dict) -> None:
    """Execute the template with `parameters` (in this process: `notebook_engine`) and export it to HTML."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    from lightning_modules.analysis.notebook_engine import ENGINE_NAME
    from lightning_modules.core.io import atomic_path

    started = time.perf_counter()
    log.info("report %s on %s", Path(template).name, ", ".join(f"{name}={value}" for name, value in parameters.items()))
    with atomic_path(out_notebook) as tmp_notebook:
        papermill.execute_notebook(str(template), str(tmp_notebook), parameters=parameters, engine_name=ENGINE_NAME,
                                   kernel_name="python3", progress_bar=False, cwd=str(Path.cwd()))
        executed = nbformat.read(tmp_notebook, as_version=4)
        # the page shows answers, not code (the executed notebook beside it keeps the code), under the
        # template's own heading as its title
        exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
        html, _ = exporter.from_notebook_node(executed, resources={"metadata": {"name": report_title(executed)}})
        with atomic_path(out_html) as tmp_html:
            tmp_html.write_text(html, encoding="utf-8")
    log.info("done in %.1f s: %d figures -> %s", time.perf_counter() - started, len(report_figures(executed)), out_html)


def report_figures(notebook) -> list[bytes]:
    """The PNG figures a report's cells drew, in order."""
    return [base64.b64decode(output["data"]["image/png"]) for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]


def log_report(tracking_uri: str, experiment: str, notebook: str | Path, html: str | Path) -> None:
    """The report page and each of its figures (`figure-01.png`, ...) on the sweep's parent MLflow run, under
    `reports/<name>/`."""
    import nbformat

    from lightning_modules.services.tracking import log_sweep_artifacts

    name = Path(html).stem
    with tempfile.TemporaryDirectory() as folder:
        figures = []
        for number, png in enumerate(report_figures(nbformat.read(str(notebook), as_version=4)), start=1):
            figures.append(Path(folder) / f"figure-{number:02d}.png")
            figures[-1].write_bytes(png)
        log_sweep_artifacts(tracking_uri, experiment, [html, *figures], f"reports/{name}")


HEADLINE_TABLES = ("selection", "ood", "diffusion", "claims")


def headline_tables(results_dir: str | Path) -> dict:
    """The tables the headlines read, those the sweep wrote, each read once."""
    import pandas as pd

    from lightning_modules.core.layout import Table

    folder = Path(results_dir) / Table().folder
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in HEADLINE_TABLES
            if (folder / f"{name}.parquet").exists()}


def diffusion_score(runs) -> str:
    """The FD a diffusion headline reports: the classifier-feature FD where the sweep computed it."""
    return "fd_classifier" if "fd_classifier" in runs else next(c for c in runs if c.startswith("fd_"))


def _verdict_counts(claims) -> dict[str, int]:
    from lightning_modules.analysis.claims.ledger import VERDICTS

    counts = claims.verdict.value_counts()
    return {verdict: int(counts.get(verdict, 0)) for verdict in VERDICTS}


def headlines(tables: dict) -> list[str]:
    """One line per stage for the end of `make demo`, from `headline_tables` (whatever stages the sweep ran)."""
    lines = []
    if "selection" in tables:
        pick = tables["selection"].iloc[0]
        lines.append(f"clustering: label-free pick ({pick.criterion}) on {pick.dataset}/{pick.backbone}: {pick.method} "
                     f"K = {pick.k:g}, ACC {pick.acc:.3f} (best run {pick.best_acc:.3f}, {pick.best_acc_run})")
    if "ood" in tables:
        ood = tables["ood"]
        for pair, group in ood[ood.attack_style.isna()].groupby("ood"):
            top = group.sort_values("auroc", ascending=False).iloc[0]
            tied = int((group.auroc_high >= top.auroc_low).sum()) - 1
            lines.append(f"OOD {pair}: {top.scorer} AUROC {top.auroc:.3f} [{top.auroc_low:.3f}, {top.auroc_high:.3f}]"
                         + (f"; {tied} other scorers within its interval" if tied else ""))
    if "diffusion" in tables:
        from lightning_modules.diffusion.summary import verdict

        runs = tables["diffusion"]
        score = diffusion_score(runs)
        lines.append(f"diffusion ({score}): {verdict(runs, score)}")
    if "claims" in tables:
        lines.append("claims: " + ", ".join(f"{count} {verdict}" for verdict, count in
                                            _verdict_counts(tables["claims"]).items()) + " (reports/claims.html)")
    return lines


def headline_metrics(tables: dict) -> dict[str, float]:
    """The sweep's headline numbers as metrics of its MLflow parent run: per dataset x backbone the label-free pick's
    ACC and NMI, per OOD pair the best clean AUROC, per diffusion dataset the best FD (mean over seeds), and the
    claims' verdict counts."""
    import pandas as pd

    metrics = {}
    if "selection" in tables:
        for (dataset, backbone), group in tables["selection"].groupby(["dataset", "backbone"], sort=False):
            pick = group.iloc[0]  # the first criterion's pick (the default)
            metrics.update({f"pick_acc.{dataset}.{backbone}": pick.acc, f"pick_nmi.{dataset}.{backbone}": pick.nmi})
    if "ood" in tables:
        ood = tables["ood"]
        for pair, auroc in ood[ood.attack_style.isna()].groupby("ood").auroc.max().items():
            metrics[f"best_auroc.{pair}"] = auroc
    if "diffusion" in tables:
        runs = tables["diffusion"]
        score = diffusion_score(runs)
        for dataset, fd in runs.groupby(["dataset", "cond"])[score].mean().groupby("dataset").min().items():
            metrics[f"best_{score}.{dataset}"] = fd
    if "claims" in tables:
        metrics.update({f"claims_{verdict.replace(' ', '_')}": count
                        for verdict, count in _verdict_counts(tables["claims"]).items()})
    # MLflow's metric names allow alphanumerics and _ - . : / and spaces (a multi-space backbone has a +)
    return {re.sub(r"[^\w\-.:/ ]", "_", name): float(value) for name, value in metrics.items() if pd.notna(value)}


def finish_sweep_run(results_dir: str | Path, tracking: dict, reports: list[str]) -> dict:
    """The end of a sweep in MLflow: its parent run ends now with the headline metrics, and its note lists the
    headlines and the reports (artifacts of the run under reports/<name>/)."""
    from lightning_modules.services.tracking import finish_sweep

    tables = headline_tables(results_dir)
    metrics = headline_metrics(tables)
    note = "\n".join(["**Headlines**", "", *(f"- {line}" for line in headlines(tables)), "",
                       "**Reports** (this run's artifacts):", "",
                       *(f"- `reports/{Path(report).stem}/{Path(report).name}`" for report in reports)])
    return {"metrics": metrics, **finish_sweep(**tracking, metrics=metrics, description=note)}


def mlflow_runs_address(results_dir: str | Path, server: str) -> str:
    """The sweep's runs table in the MLflow UI at `server`: its experiment, in the UI's model-training mode
    (MLflow 3 opens every experiment on its GenAI pages otherwise)."""
    from lightning_modules.core.io import read_json
    from lightning_modules.core.layout import TRACKING_EXPERIMENT

    record = Path(results_dir) / TRACKING_EXPERIMENT
    experiment = read_json(record).get("experiment_id") if record.exists() else None
    page = f"#/experiments/{experiment}/runs" if experiment else "#/experiments"
    return f"{server.rstrip('/')}/{page}?workflowType=machine_learning"


def end_message(results_dir: str | Path, server: str) -> list[str]:
    """What `make demo` ends with: every report and table the sweep wrote, one headline per stage, and where
    MLflow shows the runs."""
    from lightning_modules.core.layout import Report, Table

    results_dir = Path(results_dir)
    reports = sorted(str(path) for path in (results_dir / Report().folder).glob("*.html"))
    tables = sorted(str(path) for path in (results_dir / Table().folder).glob("*.parquet"))
    return ["", f"Reports: {', '.join(reports)}  (notebooks beside them; `make report` for Snakemake's)",
            f"Tables:  {', '.join(tables)}", *headlines(headline_tables(results_dir)),
            f"MLflow:  make mlflow-ui, then open {mlflow_runs_address(results_dir, server)}"]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the end of `make demo`: reports, tables, headlines, MLflow")
    parser.add_argument("results_dir", nargs="?", default="results")
    parser.add_argument("--config", help="the sweep's config file: its results_dir instead of the argument")
    parser.add_argument("--mlflow", default="http://127.0.0.1:5000", help="where `make mlflow-ui` serves")
    arguments = parser.parse_args()
    if arguments.config:
        from lightning_modules.core.checks import results_dir_of

        arguments.results_dir = results_dir_of(arguments.config)
    print("\n".join(end_message(arguments.results_dir, arguments.mlflow)))
