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
