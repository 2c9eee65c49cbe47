"""What the library's command lines share: a user's mistake is one line and exit status 2.

argparse already answers a bad flag that way (``error: argument --crop: …``). These argument
types extend that to values argparse cannot judge alone — a crop of 0, a noise level of NaN,
a ``--methods`` list with no name in it — and :func:`user_errors` turns what the library
refuses while a command sets up its run (a missing folder, an unknown method, a README
without its markers) into the same one-line message, instead of a Python traceback. Errors
*during* the run are not caught: those are bugs, and their traceback is wanted.
"""

from __future__ import annotations

import argparse
import math
from contextlib import contextmanager
from typing import Iterator


def whole_number_at_least(text: str, lowest: int) -> int:
    """``text`` as an int ≥ ``lowest``, or the argparse error that says so."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < lowest:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ {lowest}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (sizes, counts, steps).

    Example:
        >>> positive_int("256")
        256
    """
    return whole_number_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number ≥ 0 (a shift, an optional count).

    Example:
        >>> non_negative_int("0")
        0
    """
    return whole_number_at_least(text, 0)


def noise_level(text: str) -> float:
    """An argparse type: a noise standard deviation, finite and ≥ 0 (``nan``/``inf`` refused).

    Example:
        >>> noise_level("0.01")
        0.01
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite noise level ≥ 0 (e.g. 0.01), got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (learning rates, penalties)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def names(text: str) -> list[str]:
    """An argparse type: a comma-separated list with at least one name (``","`` is refused).

    Example:
        >>> names("wiener, tv")
        ['wiener', 'tv']
    """
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"names nothing: give comma-separated names, got {text!r}")
    return items


def experiment_parser(module: str, doc: str | None, data: bool = True) -> argparse.ArgumentParser:
    """The command line every measurement command starts from: ``--json OUT`` (write the results),
    ``--device`` (cpu or cuda; default cuda if available) and, with ``data``, ``--data-dir``.

    Example:
        >>> experiment_parser("deblur_edu.experiments.ch5_blind_shift", "What a shift costs.").prog
        'python -m deblur_edu.experiments.ch5_blind_shift'
    """
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").strip().split("\n")[0])
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    if data:
        p.add_argument("--data-dir", default=None, help="data directory (default: $DEBLUR_EDU_DATA or the cache)")
    return p


@contextmanager
def user_errors(parser: argparse.ArgumentParser) -> Iterator[None]:
    """Inside the block, a ``ValueError`` or ``OSError`` (what the library raises for bad input,
    a missing file, no network) exits through ``parser.error``: one line, status 2."""
    try:
        yield
    except (ValueError, OSError) as err:
        parser.error(" ".join(str(err).split()))
