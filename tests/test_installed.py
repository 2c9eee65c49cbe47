"""Every chapter and assignment runs from the installed package: CI's one execution of the notebooks.

The Colab situation, minus the GPU: the wheel is built from the checkout, and the notebooks are copied
into a temporary folder with no repository around it and run there by nbval (quick mode) in a fresh
virtual environment that holds the dependencies but not deblur_edu. Each notebook's setup cell installs
the package from ``DEBLUR_EDU_INSTALL`` (the local wheel, where Colab would take the published URL), so
the setup cell is exercised too. The executed book chapters go to the book build's execution cache
(``tests/notebook_cache_plugin.py``): the build in ``tests/test_book.py`` runs none of them again.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = ("book", "tutorials/source")
#: what a fresh environment must not borrow from this one: the package itself (it comes from the wheel)
NOT_BORROWED = ("deblur_edu", "__editable__", "_deblur_edu")
SOURCE_IGNORED = shutil.ignore_patterns(".git", ".venv", "runs", "_build", "node_modules", "_extra", "build",
                                        "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".gpu-data")


def build_wheel(folder: Path) -> Path:
    """The wheel of a copy of the checkout (a copy: no build/ left in the checkout, nothing stale in it)."""
    source = folder / "source"
    shutil.copytree(ROOT, source, ignore=SOURCE_IGNORED, symlinks=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(folder / "dist")], check=True, capture_output=True, text=True)
    (wheel,) = (folder / "dist").glob("deblur_edu-*.whl")
    shutil.rmtree(source)
    return wheel


def importable(python: Path, cwd: Path) -> str:
    probe = "import importlib.util as u; s = u.find_spec('deblur_edu'); print(s.origin if s else '')"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), "-c", probe], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.slow
def test_every_notebook_runs_from_the_installed_wheel(tmp_path, request, make_environment):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:  # every measurement the chapters may read ships (the README's figure need not)
        shipped = {n.split("deblur_edu/benchmarks/", 1)[1] for n in z.namelist() if "deblur_edu/benchmarks/" in n}
    measured = {p.relative_to(ROOT / "benchmarks").as_posix() for p in (ROOT / "benchmarks").rglob("*")
                if p.is_file() and p.suffix != ".png"}
    assert shipped == measured, f"not in the wheel: {sorted(measured - shipped)}; extra: {sorted(shipped - measured)}"
    python = make_environment(tmp_path, NOT_BORROWED)  # the dependencies, not deblur_edu
    run = tmp_path / "run"
    for d in NOTEBOOK_DIRS:
        (run / d).mkdir(parents=True)
        for nb in sorted((ROOT / d).glob("*.ipynb")):
            shutil.copy(nb, run / d / nb.name)
    shutil.copy(ROOT / "tests" / "notebook_cache_plugin.py", run / "conftest.py")
    assert importable(python, run) == "", "the fresh environment must not see deblur_edu before the setup cells"

    cached_list = tmp_path / "cached.json"
    # the kernels draw inline figures for the book: no MPLBACKEND from this process
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MPLBACKEND")}
    # the kernels are this environment's Python (--nbval-current-env), with no user kernelspec or IPython profile
    env.update(JUPYTER_PATH=str(tmp_path / "jupyter"), JUPYTER_DATA_DIR=str(tmp_path / "jupyter"),
               IPYTHONDIR=str(tmp_path / "ipython"))
    env.update(DEBLUR_EDU_INSTALL=str(wheel), DEBLUR_EDU_MODE="quick", PATH=f"{python.parent}:{env['PATH']}",
               DEBLUR_EDU_BOOK_CACHE=str(ROOT / "book" / "_build" / ".jupyter_cache"),
               DEBLUR_EDU_CACHED_LIST=str(cached_list))
    proc = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
                           "--rootdir", str(run), *NOTEBOOK_DIRS],
                          cwd=run, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    assert "notebook times" in proc.stdout, proc.stdout[-3000:]
    print(proc.stdout[proc.stdout.find("notebook times"):][:3000])  # the time each notebook took
    installed = importable(python, run)
    assert installed.startswith(str(python.parents[1])), f"deblur_edu came from {installed!r}, not the wheel"
    notebooks = sum(len(list((ROOT / d).glob("*.ipynb"))) for d in NOTEBOOK_DIRS)
    assert proc.stdout[proc.stdout.find("notebook times"):].count(".ipynb") == notebooks
    request.config.cached_chapters = set(json.loads(cached_list.read_text())) if cached_list.is_file() else set()


def test_the_shipped_results_are_the_repositorys_and_a_missing_one_is_named():
    from deblur_edu import results

    assert results.RESULTS_DIR.resolve() == (ROOT / "benchmarks").resolve()  # in a checkout: the same files
    assert {"comparison.json", "deq.json", "rgdn-cpu-log.jsonl"} <= set(results.names())
    with pytest.raises(FileNotFoundError, match="no measurement 'nope.json' ships with deblur_edu.*shipped: .*deq.json"):
        results.load_json("nope.json")


def test_no_notebook_reads_a_path_of_the_repository():
    """A quick first line of defence (strings only); the installed-wheel run above is the real guard."""
    for d in NOTEBOOK_DIRS:
        for nb in sorted((ROOT / d).glob("*.ipynb")):
            code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
            assert "../" not in code and "benchmarks/" not in code, f"{nb.name} reads a path relative to the checkout"
