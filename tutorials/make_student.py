"""Generate the student version of every assignment from its source.

    python tutorials/make_student.py            # writes tutorials/student/*.ipynb

A source notebook (``tutorials/source/``) holds the solution between nbgrader-style markers::

    ### BEGIN SOLUTION
    ...
    ### END SOLUTION

In code cells the marked lines become ``# YOUR CODE HERE`` + ``raise NotImplementedError()``
(keeping the indentation); in markdown cells they become ``YOUR ANSWER HERE``. All outputs
are cleared, so students start from a clean notebook. The checks stay as they are.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def strip_solutions(source: str, cell_type: str) -> str:
    """Replace every marked block of ``source`` by the student placeholder."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            inside = True
            indent = re.match(r"\s*", line).group(0)
            if cell_type == "code":
                out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
            else:
                out.append("YOUR ANSWER HERE")
        elif stripped == END:
            if not inside:
                raise ValueError(f"{END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        cell.source = strip_solutions(cell.source, cell.cell_type)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    return nb


def main(out_dir: Path = HERE / "student") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted((HERE / "source").glob("*.ipynb")):
        target = out_dir / src.name
        nbformat.write(student_version(nbformat.read(src, as_version=4)), target)
        written.append(target)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "student"):
        print(p)
