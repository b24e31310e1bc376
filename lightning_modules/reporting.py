"""Report notebooks: a papermill template (a cell tagged `parameters`) executed on a stage's table, then
exported to a self-contained HTML page (plots embedded) with nbconvert."""

from __future__ import annotations

from pathlib import Path


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
        html, _ = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(executed)
        with atomic_path(out_html) as tmp_html:
            tmp_html.write_text(html, encoding="utf-8")
