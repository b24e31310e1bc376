"""Report notebooks: a papermill template (a cell tagged `parameters`) executed on a stage's table, then
exported to a self-contained HTML page (plots embedded) with nbconvert."""

from __future__ import annotations

from pathlib import Path


def report_title(notebook) -> str:
    """The first markdown heading of the notebook ("Clustering report"), or "clusterlab report"."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return "clusterlab report"


def render_report(template: str | Path, out_notebook: str | Path, out_html: str | Path, parameters: dict,
                  kernel_name: str = "python3") -> None:
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    from lightning_modules.io import atomic_path

    with atomic_path(out_notebook) as tmp_notebook:
        papermill.execute_notebook(
            str(template), str(tmp_notebook), parameters=parameters, kernel_name=kernel_name,
            progress_bar=False, cwd=str(Path.cwd()),
        )
        executed = nbformat.read(tmp_notebook, as_version=4)
        # the page shows answers, not code (the executed notebook beside it keeps the code), under the
        # template's own heading as its title
        exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
        html, _ = exporter.from_notebook_node(executed, resources={"metadata": {"name": report_title(executed)}})
        with atomic_path(out_html) as tmp_html:
            tmp_html.write_text(html, encoding="utf-8")


def headlines(results_dir: str | Path) -> list[str]:
    """One line per stage for the end of `make demo`, read from the tables (whatever stages the sweep ran)."""
    import pandas as pd

    tables, lines = Path(results_dir) / "tables", []
    if (tables / "selection.parquet").exists():
        pick = pd.read_parquet(tables / "selection.parquet").iloc[0]
        lines.append(f"clustering: label-free pick ({pick.criterion}) on {pick.dataset}/{pick.backbone}: {pick.method} "
                     f"K = {pick.k}, ACC {pick.acc:.3f} (best run {pick.best_acc:.3f}, {pick.best_acc_run})")
    if (tables / "ood.parquet").exists():
        ood = pd.read_parquet(tables / "ood.parquet")
        clean = ood[ood.attack_style.isna()]
        for pair, group in clean.groupby("ood"):
            top = group.sort_values("auroc", ascending=False).iloc[0]
            tied = int((group.auroc_high >= top.auroc_low).sum()) - 1
            lines.append(f"OOD {pair}: {top.scorer} AUROC {top.auroc:.3f} [{top.auroc_low:.3f}, {top.auroc_high:.3f}]"
                         + (f"; {tied} other scorers within its interval" if tied else ""))
    if (tables / "diffusion.parquet").exists():
        from lightning_modules.diffusion.summary import summarise, verdict

        runs = pd.read_parquet(tables / "diffusion.parquet")
        score = "fd_classifier" if "fd_classifier" in runs else next(c for c in runs if c.startswith("fd_"))
        lines.append(f"diffusion ({score}): {verdict(summarise(runs, score), score)}")
    return lines


if __name__ == "__main__":
    import sys

    print("\n".join(headlines(sys.argv[1] if len(sys.argv) > 1 else "results")))
