"""The measurements the book shows, shipped with the package.

Every measurement a chapter plots or prints lives in the repository's ``benchmarks/`` folder, written
by the command named in the chapter and in the Makefile (never typed in). The package ships that
folder as ``deblur_edu/benchmarks`` (in a checkout, a link to it), so a chapter reads the same files
from a checkout, from ``pip install`` and in Colab, with no path relative to the repository:

    >>> from deblur_edu import results
    >>> results.load_json("deq_cost.json")["settings"]["checkpoint"]
    'deq-jfb-cpu'
    >>> "val_psnr" in results.load_log("rgdn-cpu-log.jsonl")[-1]
    True
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).with_name("benchmarks")


def names() -> list[str]:
    """The shipped measurement files."""
    return sorted(p.name for p in RESULTS_DIR.iterdir() if p.is_file()) if RESULTS_DIR.is_dir() else []


def path(name: str) -> Path:
    """The shipped file ``name`` (e.g. ``"deq.json"``); a clear error naming what is shipped when it is not."""
    found = RESULTS_DIR / name
    if not found.is_file():
        raise FileNotFoundError(f"no measurement {name!r} ships with deblur_edu (in {RESULTS_DIR}); "
                                f"shipped: {', '.join(names()) or 'none'}.")
    return found


def load_json(name: str) -> dict | list:
    """A shipped JSON measurement (a benchmark table, a cost measurement, …)."""
    return json.loads(path(name).read_text())


def load_log(name: str) -> list[dict]:
    """A shipped training log (``*-log.jsonl``): one record per logged step."""
    return [json.loads(line) for line in path(name).read_text().splitlines() if line.strip()]
