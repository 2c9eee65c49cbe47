"""Shared pytest setup: doctests see ``torch``; tests find the benchmark data."""

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["torch"] = torch


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
