"""Shared pytest setup: doctests see ``torch``; tests find the benchmark data; every notebook
runs once (nbval), and the book is built from that one execution."""

import json
import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["torch"] = torch


@pytest.fixture
def skip_without_photos():
    """``skip_without_photos(data_cfg)`` skips a test whose training recipe draws from photographs
    when the data directory holds none."""

    def skip(data_cfg: dict) -> None:
        if "task" not in data_cfg:
            return
        root = Path(os.environ.get("DEBLUR_EDU_DATA", SHARED_DATA))
        folder = Path(data_cfg["photos"]) if data_cfg.get("photos") else root / "photos"
        if not folder.is_dir() or not any(folder.iterdir()):
            pytest.skip(f"no training photographs at {folder}; set DEBLUR_EDU_DATA")

    return skip


@pytest.fixture
def data_dir() -> Path:
    """The benchmark data directory: $DEBLUR_EDU_DATA, else ../shared/data; skip if absent."""
    d = Path(os.environ.get("DEBLUR_EDU_DATA", SHARED_DATA))
    if not (d / "set12").is_dir():
        pytest.skip(f"benchmark data not found at {d}; set DEBLUR_EDU_DATA")
    return d


@pytest.fixture
def cli_error(capsys):
    """``cli_error(main, argv)``: run a command line that must refuse its arguments — exit
    status 2 and no traceback — and return its last stderr line (argparse's ``error:`` line)."""

    def run(main, argv: list[str]) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2, err
        assert "Traceback" not in err
        return err.strip().splitlines()[-1]

    return run


def pytest_configure(config):
    # notebooks run in quick mode under test; the book build inherits this too
    os.environ.setdefault("DEBLUR_EDU_MODE", "quick")
    if "DEBLUR_EDU_DATA" not in os.environ and (SHARED_DATA / "set12").is_dir():
        os.environ["DEBLUR_EDU_DATA"] = str(SHARED_DATA)  # the library looks there too, not only the fixture
    config.executed_notebooks = {}  # path → the notebook as nbval ran it (outputs, widget state, seconds)
    config.cached_chapters = set()  # the book's chapters handed to the book build's execution cache


# ----- each notebook executes once: nbval runs it, the book build reuses that run ----------------------
BOOK = Path(__file__).resolve().parent / "book"
BOOK_CACHE = BOOK / "_build" / ".jupyter_cache"  # where Jupyter Book (myst-nb) looks for executed notebooks
WIDGET_STATE = ("import json as _j, ipywidgets as _w\n"
                "print(_j.dumps(_w.Widget.get_manager_state(drop_defaults=True)))")


def _is_notebook_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell"


def pytest_collection_modifyitems(session, config, items):
    """The book's build and browser tests run after every notebook has run under nbval."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_book.py"))


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
    if record is None or record["failed"] or path.parent != BOOK or not item.parent.kernel.is_alive():
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
