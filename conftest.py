"""Shared pytest setup: doctests see ``torch``; tests find the benchmark data; the book's tests run
last, after ``tests/test_installed.py`` has run every notebook once (nbval, from the installed wheel)
and handed the executed chapters to the book build (``tests/notebook_cache_plugin.py``)."""

import os
import subprocess
import sys
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
def small_bank(tmp_path):
    """``small_bank(data_cfg)``: a ``task: refine`` recipe pointed at a bank of 16 samples of 64² built from it
    in a temporary folder (blind TV first, :mod:`deblur_edu.first_stage`; a few seconds); any other recipe unchanged."""

    def build(data_cfg: dict) -> dict:
        if data_cfg.get("task") != "refine":
            return data_cfg
        from deblur_edu.bench.first_stage import blind_tv
        from deblur_edu.first_stage import build_part

        small = {**data_cfg, "bank": str(tmp_path / "bank"), "bank_size": 16, "bank_patch": 64,
                 "patch": min(data_cfg["patch"], 64), "holdout": 4}
        build_part(small, 0, 1, blind_tv, log=lambda *_: None)
        return small

    return build


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


def borrowed_environment(folder: Path, without: tuple[str, ...]) -> Path:
    """A virtual environment in ``folder`` holding this one's packages (linked: no download) except those whose
    names start with one of ``without`` (lower case); returns its python."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir() and sys.prefix in p]
    target = next((venv / "lib").glob("python*/site-packages"))
    for entry in Path(site).iterdir():
        if not entry.name.lower().startswith(without):
            (target / entry.name).symlink_to(entry)
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def make_environment():
    """``make_environment(folder, without)``: :func:`borrowed_environment` (a GPU machine's environment without
    Jupyter; a fresh one without deblur_edu)."""
    return borrowed_environment


def pytest_configure(config):
    # notebooks run in quick mode under test; the book build inherits this too
    os.environ.setdefault("DEBLUR_EDU_MODE", "quick")
    if "DEBLUR_EDU_DATA" not in os.environ and (SHARED_DATA / "set12").is_dir():
        os.environ["DEBLUR_EDU_DATA"] = str(SHARED_DATA)  # the library looks there too, not only the fixture
    config.cached_chapters = set()  # the book's chapters the notebook run handed to the book build's cache


def pytest_collection_modifyitems(session, config, items):
    """The book's build and browser tests run after every notebook has run under nbval
    (``tests/test_installed.py``)."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_book.py"))


