"""A papermill engine that runs a report's cells in this process's IPython shell instead of a Jupyter kernel.

Why: a kernel is a second Python process that starts (~1.7 s here), imports pandas, matplotlib, seaborn and the
project again (~1.7 s) and talks to papermill over ZMQ, while a report job forked from the warm job server has
all of that imported already: the kernel was half of a tiny sweep's report (6.4 s of a clustering report on the
tests' sweeps). papermill's engines are its plug-in point for other executors; nbclient needs a kernel, and
ipykernel's in-process kernel manager does not fit nbclient's asynchronous client, so the cells run in an
IPython shell and their outputs are recorded as a kernel sends them: streams, display data, execute results
(rich representations, from IPython's own formatters) and errors, in order, with matplotlib's inline backend
(the kernel's) drawing each cell's figures at its end.

A cell that raises gets the kernel's error output and stops the notebook; papermill then raises its
PapermillExecutionError, as with a kernel. Each notebook starts from an empty namespace.
"""

from __future__ import annotations

import io
import sys

import nbformat
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from papermill.engines import Engine, papermill_engines
from traitlets import Type
from traitlets.config import Config

ENGINE_NAME = "clusterlab-in-process"


class _CellOutputs:
    """The outputs of the running cell, in the order they were made (the shell's hooks append to `current`)."""

    current: list = []

    @classmethod
    def stream(cls, name: str, text: str) -> None:
        last = cls.current[-1] if cls.current else None
        if last is not None and last.output_type == "stream" and last.name == name:
            last.text += text
        else:
            cls.current.append(nbformat.v4.new_output("stream", name=name, text=text))


class _Stream(io.TextIOBase):
    def __init__(self, name: str):
        self.name = name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            _CellOutputs.stream(self.name, text)
        return len(text)


class _DisplayPublisher(DisplayPublisher):
    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs) -> None:
        _CellOutputs.current.append(nbformat.v4.new_output("display_data", data=data, metadata=metadata or {}))

    def clear_output(self, wait=False) -> None:
        _CellOutputs.current.clear()


class _ResultHook(DisplayHook):
    """The value of a cell's last expression as an execute_result, as ipykernel's displayhook sends it."""

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict, md_dict=None) -> None:
        _CellOutputs.current.append(nbformat.v4.new_output(
            "execute_result", data=format_dict, metadata=md_dict or {}, execution_count=self.prompt_count))

    def finish_displayhook(self) -> None:
        pass


class _ReportShell(InteractiveShell):
    displayhook_class = Type(_ResultHook)
    display_pub_class = Type(_DisplayPublisher)

    def enable_gui(self, gui=None) -> None:
        pass  # the inline backend needs no event loop (ipykernel's shell does the same for it)

    def _showtraceback(self, etype, evalue, stb) -> None:
        _CellOutputs.current.append(nbformat.v4.new_output(
            "error", ename=etype.__name__, evalue=str(evalue), traceback=list(stb)))


def _shell() -> _ReportShell:
    """The process's report shell (created once: no history file, the inline backend, plain-text tracebacks)."""
    if not _ReportShell.initialized():
        config = Config()
        config.HistoryManager.enabled = False  # no SQLite history under ~/.ipython, shared by concurrent jobs
        config.InteractiveShell.colors = "nocolor"
        main = sys.modules["__main__"]
        shell = _ReportShell.instance(config=config)
        # IPython puts its namespace in as the process's __main__; the process keeps its own (multiprocessing
        # reads it to start a process; the cells run in the shell's namespace either way)
        sys.modules["__main__"] = main
        shell.enable_matplotlib("inline")
    return _ReportShell.instance()


class InProcessEngine(Engine):
    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs) -> None:
        import matplotlib
        import matplotlib.pyplot as plt

        shell = _shell()
        shell.reset(new_session=False)  # an empty namespace per notebook, counted from 1 as a new kernel counts
        shell.execution_count = 1
        streams = sys.stdout, sys.stderr
        # matplotlib's settings as a fresh process has them, restored after: a notebook's theme (seaborn's
        # set_theme) does not reach the next notebook run in this process
        with matplotlib.rc_context():
            matplotlib.rc_file_defaults()
            try:
                for index, cell in enumerate(nb_man.nb.cells):
                    nb_man.cell_start(cell, index)
                    if cell.cell_type == "code" and not cls._run(shell, cell, streams):
                        nb_man.cell_exception(cell, index)
                        nb_man.cell_complete(cell, index)
                        break
                    nb_man.cell_complete(cell, index)
            finally:
                _CellOutputs.current = []
                plt.close("all")

    @staticmethod
    def _run(shell: _ReportShell, cell, streams) -> bool:
        """Run one code cell, its outputs recorded on it; False when it raised."""
        cell.outputs = _CellOutputs.current = []
        sys.stdout, sys.stderr = _Stream("stdout"), _Stream("stderr")
        try:
            result = shell.run_cell(cell.source, store_history=True)
        finally:
            sys.stdout, sys.stderr = streams
        cell.execution_count = shell.execution_count - 1
        return result.success


papermill_engines.register(ENGINE_NAME, InProcessEngine)
