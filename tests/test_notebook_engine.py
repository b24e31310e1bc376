"""The reports' papermill engine runs cells in this process and records what a Jupyter kernel would send: the same
outputs, in the same order, the same figures; a failing cell stops the notebook with papermill's error; nothing of
one notebook (names, matplotlib's settings) reaches the next."""

import sys

import matplotlib
import nbformat
import papermill
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lightning_modules.analysis import notebook_engine
from lightning_modules.analysis.notebook_engine import ENGINE_NAME

CELLS = [
    new_code_cell("rows = 3", metadata={"tags": ["parameters"]}),
    new_markdown_cell("# A report"),
    new_code_cell("import matplotlib.pyplot as plt\nimport pandas as pd\nfrom IPython.display import Markdown, display\n"
                  "print('before')\ndisplay(Markdown(f'**{rows} rows**'))\nprint('after', flush=True)\n"
                  "import sys; print('a warning', file=sys.stderr)"),
    new_code_cell("frame = pd.DataFrame({'x': range(rows), 'y': [v * v for v in range(rows)]})\nframe"),
    new_code_cell("figure, axis = plt.subplots(figsize=(3, 2))\naxis.plot(frame.x, frame.y)\nplt.show()"),
    new_code_cell("import seaborn as sns\nsns.set_theme(style='whitegrid')\nlen(frame);"),
]


def run(tmp_path, cells, engine, name="out", **parameters):
    path = tmp_path / f"{name}.in.ipynb"
    notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                  "display_name": "Python 3"}})
    nbformat.write(notebook, path)
    papermill.execute_notebook(str(path), str(tmp_path / f"{name}.ipynb"), parameters=parameters, kernel_name="python3",
                               progress_bar=False, engine_name=engine)
    return nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)


def outputs(notebook):
    return [[(output.output_type, output.get("name"), output.get("text"), dict(output.get("data", {})))
             for output in cell.outputs] for cell in notebook.cells if cell.cell_type == "code"]


def test_outputs_and_figures_are_the_kernels(tmp_path):
    ours = run(tmp_path, CELLS, ENGINE_NAME, "ours", rows=4)
    kernel = run(tmp_path, CELLS, None, "kernel", rows=4)  # papermill's own engine: a Jupyter kernel
    assert outputs(ours) == outputs(kernel)
    assert [cell.execution_count for cell in ours.cells if cell.cell_type == "code"] == [1, 2, 3, 4, 5, 6]
    first = outputs(ours)[2]
    assert [kind for kind, *_ in first] == ["stream", "display_data", "stream", "stream"]  # printed, shown, in order
    assert first[1][3]["text/markdown"] == "**4 rows**"
    assert "image/png" in outputs(ours)[4][0][3]
    assert outputs(ours)[5] == []  # a trailing semicolon shows nothing


def test_nothing_of_one_notebook_reaches_the_next(tmp_path):
    before = dict(matplotlib.rcParams)
    run(tmp_path, CELLS, ENGINE_NAME, "first")  # defines `frame`, sets a seaborn theme
    assert dict(matplotlib.rcParams) == before
    second = run(tmp_path, [new_code_cell("'frame' in dir(), 'rows' in dir()")], ENGINE_NAME, "second")
    assert second.cells[0].outputs[0].data["text/plain"] == "(False, False)"
    assert second.cells[0].execution_count == 1
    # the process's own __main__ stays (IPython puts its namespace there; multiprocessing reads __main__)
    assert sys.modules["__main__"] is not notebook_engine._shell().user_module


def test_a_failing_cell_stops_the_notebook_with_papermills_error(tmp_path):
    cells = [new_code_cell("x = 1"), new_code_cell("print('ran')\n1 / 0"), new_code_cell("print('never')")]
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        run(tmp_path, cells, ENGINE_NAME)
    assert raised.value.ename == "ZeroDivisionError" and raised.value.exec_count == 2
    written = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    failed, never = written.cells[-2], written.cells[-1]
    assert [output.output_type for output in failed.outputs] == ["stream", "error"]
    assert "1 / 0" in "\n".join(failed.outputs[1].traceback)
    assert never.outputs == [] and never.execution_count is None


def test_the_report_templates_are_valid_notebooks_without_warnings():
    """nbformat 4.5 gives every cell an id: a template without one printed a MissingIDFieldWarning into each report
    job's log."""
    import warnings

    from lightning_modules.services.job_server import REPORT_TEMPLATES

    templates = sorted(REPORT_TEMPLATES.glob("*.ipynb"))
    assert len(templates) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for template in templates:
            nbformat.validate(nbformat.read(template, as_version=4))
