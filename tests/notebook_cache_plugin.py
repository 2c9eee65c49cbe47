"""pytest plugin for the one execution of every notebook (nbval, ``tests/test_installed.py``).

That test copies the notebooks into a folder with no repository around it and runs nbval there, in a
fresh virtual environment holding the built wheel, with this file as the folder's ``conftest.py``. The
plugin keeps each cell's outputs as nbval received them and, after a book chapter's last cell (while
its kernel still runs, for the widget state), hands the executed chapter to the book build's execution
cache (``DEBLUR_EDU_BOOK_CACHE``), so that building the book runs no chapter again. It writes the
chapters it cached to ``DEBLUR_EDU_CACHED_LIST`` and prints the time each notebook took.
"""

import json
import os
from pathlib import Path

import pytest

BOOK_CACHE = Path(os.environ.get("DEBLUR_EDU_BOOK_CACHE", "book/_build/.jupyter_cache"))
CACHED_LIST = os.environ.get("DEBLUR_EDU_CACHED_LIST")


def pytest_configure(config):
    config.executed_notebooks = {}  # path → the notebook as nbval ran it (outputs, widget state, seconds)
    config.cached_chapters = set()


WIDGET_STATE = ("import json as _j, ipywidgets as _w\n"
                "print(_j.dumps(_w.Widget.get_manager_state(drop_defaults=True)))")


def _is_notebook_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each cell's outputs as nbval received them (its ``test_outputs``)."""
    outcome = yield
    if call.when == "call" and _is_notebook_cell(item):
        record = item.config.executed_notebooks.setdefault(
            item.parent.path, {"outputs": {}, "failed": False, "seconds": 0.0, "nb": item.parent.nb})
        record["outputs"][id(item.cell)] = list(item.test_outputs or [])
        record["seconds"] += call.duration
        record["failed"] |= outcome.get_result().failed


def kernel_print(kernel, code: str, timeout: float = 60) -> str:
    """Run ``code`` in nbval's kernel of a notebook and return what it printed."""
    msg_id = kernel.execute_cell_input(code, allow_stdin=False)
    kernel.await_reply(msg_id, timeout=timeout)
    text = ""
    while True:
        msg = kernel.get_message(stream="iopub", timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text += msg["content"]["text"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return text


def executed_notebook(record: dict, widget_state: dict | None):
    """The source notebook with nbval's outputs, execution counts and the kernel's widget state."""
    import copy

    nb = copy.deepcopy(record["nb"])
    count = 0
    for original, cell in zip(record["nb"].cells, nb.cells):
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        cell.outputs = copy.deepcopy(record["outputs"].get(id(original), []))
        for out in cell.outputs:
            if out.get("output_type") == "execute_result":
                out["execution_count"] = count
    if widget_state and widget_state.get("state"):
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": widget_state}
    return nb


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """After a book chapter's last cell, while its kernel still runs: hand the executed chapter to
    the book build's execution cache, so that building the book does not run it again."""
    if not _is_notebook_cell(item) or (nextitem is not None and nextitem.parent is item.parent):
        return
    path = Path(item.parent.path)
    record = item.config.executed_notebooks.get(item.parent.path)
    if record is None or record["failed"] or path.parent.name != "book" or not item.parent.kernel.is_alive():
        return
    state = json.loads(kernel_print(item.parent.kernel, WIDGET_STATE) or "{}")
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    nb = executed_notebook(record, state)
    BOOK_CACHE.parent.mkdir(parents=True, exist_ok=True)
    get_cache(str(BOOK_CACHE)).cache_notebook_bundle(
        CacheBundleIn(nb, str(path), data={"execution_seconds": record["seconds"]}),
        check_validity=False, overwrite=True)
    item.config.cached_chapters.add(path.stem)
    if CACHED_LIST:
        Path(CACHED_LIST).write_text(json.dumps(sorted(item.config.cached_chapters)))


def pytest_terminal_summary(terminalreporter):
    """Print the time each notebook took under nbval (summed over its cells)."""
    per_notebook: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for r in reports:
            nodeid = getattr(r, "nodeid", "")
            nb = nodeid.split("::")[0]
            if nb.endswith(".ipynb") and getattr(r, "when", "") == "call":
                per_notebook[nb] = per_notebook.get(nb, 0.0) + r.duration
    if per_notebook:
        terminalreporter.section("notebook times (nbval, quick mode)")
        for nb, seconds in sorted(per_notebook.items()):
            terminalreporter.write_line(f"{seconds:7.1f} s  {nb}")
