"""Maintenance commands for the notebooks of the book and the assignments.

    python book/notebook_tools.py refresh [NOTEBOOK ...]   # re-run in quick mode, store checked outputs
    python book/notebook_tools.py sync-colab               # Colab badge + install line from _config.yml

``refresh`` executes each notebook (``DEBLUR_EDU_MODE=quick``, in its own folder) and keeps
only the outputs of cells marked ``# NBVAL_CHECK_OUTPUT``: those are what nbval compares
(``--nbval-lax``); every other output is produced when the book is built, so the notebooks
stay small in git.

``sync-colab`` rewrites every notebook's *Open in Colab* badge and the ``pip install
git+…`` line of its setup cell from the one repository setting in ``book/_config.yml``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
NOTEBOOKS = sorted(ROOT.glob("book/[0-9]*.ipynb")) + sorted(ROOT.glob("tutorials/source/*.ipynb"))


def repository() -> tuple[str, str]:
    """(url, branch) from book/_config.yml — the single repository setting."""
    cfg = yaml.safe_load((ROOT / "book/_config.yml").read_text())["repository"]
    return cfg["url"].rstrip("/"), cfg.get("branch", "main")


def colab_url(path_in_repo: str) -> str:
    url, branch = repository()
    slug = url.split("github.com/", 1)[1]
    return f"https://colab.research.google.com/github/{slug}/blob/{branch}/{path_in_repo}"


def handout_path(nb_path: Path) -> str:
    """The notebook a reader opens in Colab: assignments link to their student version."""
    rel = nb_path.resolve().relative_to(ROOT).as_posix()
    return rel.replace("tutorials/source/", "tutorials/student/")


def sync_colab(nb_path: Path) -> bool:
    nb = nbformat.read(nb_path, as_version=4)
    url, _ = repository()
    before = [c.source for c in nb.cells]
    badge = f"(https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(handout_path(nb_path))})"
    for cell in nb.cells:
        cell.source = re.sub(r"\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\([^)]*\)", badge, cell.source)
        cell.source = re.sub(r'git\+https://[^"\s]+', f"git+{url}", cell.source)
    changed = before != [c.source for c in nb.cells]
    if changed:
        nbformat.write(nb, nb_path)
    return changed


def refresh(nb_path: Path) -> float:
    from nbclient import NotebookClient

    nb = nbformat.read(nb_path, as_version=4)
    os.environ["DEBLUR_EDU_MODE"] = "quick"
    start = time.time()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(nb_path.parent)}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            if CHECK_MARK not in cell.source:
                cell.outputs, cell.execution_count = [], None  # nbval needs counts on kept outputs
            cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, nb_path)
    return time.time() - start


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("refresh", "sync-colab"):
        print(__doc__)
        return 2
    paths = [Path(p) for p in argv[1:]] or NOTEBOOKS
    for p in paths:
        if argv[0] == "refresh":
            print(f"{p}: {refresh(p):.1f} s")
        else:
            print(f"{p}: {'updated' if sync_colab(p) else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
