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
