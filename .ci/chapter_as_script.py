"""Run a chapter notebook as plain Python, where Jupyter is not installed (a lent GPU machine).

    python .ci/chapter_as_script.py book/03_learned_gradient_descent.ipynb [--json OUT] [--mode full|quick]

The GPU machines this project borrows have torch, scikit-image, matplotlib and pytest but no nbval,
nbclient, ipykernel or ipywidgets, and no network. So the notebook's code cells are read from its
JSON (no nbformat needed) and executed in order in one namespace, in the notebook's folder (as
Jupyter would), with:

- shell and magic lines (``!pip …``, ``%matplotlib …``) replaced by ``pass`` (the Colab install line
  sits inside an ``if``: the block stays valid Python);
- ``ipywidgets`` and ``IPython.display``, when missing, replaced by stand-ins that accept every call
  and draw nothing (a widget has a static fallback in the book; here nothing is shown);
- matplotlib on its non-interactive ``Agg`` backend.

Prints one JSON record and writes it to ``--json`` (appended to a list when the file exists):
status (``ok``, ``error``), seconds, the slowest cells, the error's cell and message, and the peak
memory (CUDA's allocator and the process's resident set). With ``--limit SECONDS`` the run stops at
the first Python instruction past the limit (``timeout``, with the cell it reached). Exit status:
0 ``ok``, 1 ``error``, 3 ``timeout``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import sys
import time
import traceback
import types
from pathlib import Path

SHELL_OR_MAGIC = re.compile(r"^(\s*)[!%].*$", re.MULTILINE)


def code_cells(notebook: Path) -> list[str]:
    """The notebook's code cells as Python source, shell and magic lines replaced by ``pass``."""
    cells = json.loads(notebook.read_text())["cells"]
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
               for c in cells if c["cell_type"] == "code"]
    return [SHELL_OR_MAGIC.sub(r"\1pass  # shell or magic line skipped", s) for s in sources]


class Anything:
    """A stand-in object: every call, attribute and item gives another stand-in; it iterates as empty and
    serves as a context manager (a widget's output area)."""

    def __init__(self, *args, **kwargs):
        self.value = kwargs.get("value")

    def __call__(self, *args, **kwargs):
        return Anything()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything()

    def __getitem__(self, key):
        return Anything()

    def __iter__(self):
        return iter(())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def stub_module(name: str, **attributes) -> types.ModuleType:
    """A module whose every missing attribute is :class:`Anything` (classes and functions alike)."""
    def missing(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Anything

    module = types.ModuleType(name)
    module.__getattr__ = missing
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def install_stand_ins() -> list[str]:
    """Put stand-ins for ``ipywidgets`` and ``IPython.display`` in ``sys.modules`` where they are missing;
    returns the names stubbed. The stand-in ``IPython`` says there is no running shell (``get_ipython()``
    is None), so libraries that look for one (matplotlib, tqdm) behave as in a plain script."""
    stubbed = []
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        sys.modules["ipywidgets"] = stub_module("ipywidgets", version_info=(0, 0, 0), __version__="0.0.0+stand-in")
        stubbed.append("ipywidgets")
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        display = stub_module("IPython.display", display=lambda *a, **k: None)
        ipython = types.ModuleType("IPython")
        ipython.display, ipython.get_ipython, ipython.version_info = display, lambda: None, (0, 0, 0, "stand-in")
        sys.modules["IPython"], sys.modules["IPython.display"] = ipython, display
        stubbed.append("IPython.display")
    return stubbed


def peak_memory() -> dict:
    """Peak CUDA memory allocated (MB, None without CUDA) and the process's peak resident set (MB)."""
    cuda = None
    if "torch" in sys.modules:
        import torch
        if torch.cuda.is_available():
            cuda = torch.cuda.max_memory_allocated() / 2**20
    return {"cuda_peak_mb": cuda, "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class OutOfTime(BaseException):
    """Raised by the alarm when the chapter runs past its limit (not an ``Exception``: a chapter's own
    ``except Exception`` must not swallow it)."""


def on_alarm(signum, frame):
    raise OutOfTime()


def run(notebook: Path, limit: float | None = None) -> dict:
    """Execute ``notebook``'s code cells in its folder, stopping past ``limit`` seconds; the record
    described in the module docstring. Call it in a fresh process (``main``): it installs stand-in modules
    and switches matplotlib to ``Agg``."""
    import matplotlib

    matplotlib.use("Agg")
    stubbed = install_stand_ins()
    cells = code_cells(notebook)
    namespace = {"__name__": "__main__"}
    times, record = [], {"notebook": notebook.name, "mode": os.environ.get("DEBLUR_EDU_MODE", "auto"),
                         "cells": len(cells), "stubbed": stubbed}
    here = Path.cwd()
    os.chdir(notebook.parent)
    started = time.perf_counter()
    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    if limit:
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        for i, source in enumerate(cells):
            t0 = time.perf_counter()
            exec(compile(source, f"{notebook.name}[cell {i}]", "exec"), namespace)
            times.append((time.perf_counter() - t0, i))
            import matplotlib.pyplot as plt
            plt.close("all")
        record.update(status="ok")
    except OutOfTime:
        record.update(status="timeout", error_cell=len(times), error=f"past the {limit:g} s limit in cell {len(times)}",
                      traceback="")
    except Exception as err:  # the record says which cell failed and why; the exit status says it failed
        record.update(status="error", error_cell=len(times), error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=-3))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        os.chdir(here)
    record.update(seconds=round(time.perf_counter() - started, 2),
                  slowest_cells=[{"cell": i, "seconds": round(t, 2)} for t, i in sorted(times, reverse=True)[:3]],
                  **peak_memory())
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("notebook", type=Path)
    p.add_argument("--json", type=Path, default=None, help="append the record to this JSON list")
    p.add_argument("--mode", choices=["quick", "full"], default=None, help="DEBLUR_EDU_MODE for the chapter")
    p.add_argument("--limit", type=float, default=None, help="stop past this many seconds (status: timeout)")
    args = p.parse_args(argv)
    if not args.notebook.is_file():
        p.error(f"no notebook at {args.notebook}")
    if args.mode:
        os.environ["DEBLUR_EDU_MODE"] = args.mode
    record = run(args.notebook.resolve(), args.limit)
    print(json.dumps({k: v for k, v in record.items() if k != "traceback"}), flush=True)
    if record["status"] != "ok":
        print(record["traceback"], file=sys.stderr)
    if args.json:
        records = json.loads(args.json.read_text()) if args.json.is_file() else []
        args.json.write_text(json.dumps(records + [record], indent=1) + "\n")
    return {"ok": 0, "timeout": 3}.get(record["status"], 1)


if __name__ == "__main__":
    sys.exit(main())
