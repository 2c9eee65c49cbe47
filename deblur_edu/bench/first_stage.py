"""Build a second stage's training bank with the benchmark's ``blind-tv`` as the first stage.

    python -m deblur_edu.bench.first_stage --config cpu [--part I/N] [--device cuda]

``--config`` names a ``blind-refiner`` preset (``configs/blind-refiner-NAME.yaml``) or a YAML file;
``--part I/N`` computes every N-th batch from I, so that N processes (one per core) build the bank
side by side. What the bank holds and how training samples it: :mod:`deblur_edu.first_stage`.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..first_stage import build_part
from ..train import load_config
from .methods import get_method


def blind_tv(y: torch.Tensor) -> torch.Tensor:
    """The first stage: the benchmark's ``blind-tv`` (kernel and σ estimated from y, then TV with its tuned weight)."""
    return get_method("blind-tv")(y, None, 0.0)


def part_arg(text: str) -> tuple[int, int]:
    """``I/N`` with whole numbers 0 <= I < N."""
    try:
        part, parts = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part must be I/N with whole numbers, e.g. 0/2; got {text!r}") from None
    if not 0 <= part < parts:
        raise argparse.ArgumentTypeError(f"--part must be I/N with 0 <= I < N, got {text!r}")
    return part, parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deblur_edu.bench.first_stage", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="a blind-refiner preset (cpu, full, pilot, tiny: "
                        "configs/blind-refiner-NAME.yaml) or a YAML file")
    parser.add_argument("--part", type=part_arg, default=(0, 1), help="I/N: every N-th batch from I (default 0/1)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        cfg = load_config("blind-refiner", args.config)
        build_part(cfg["data"], *args.part, blind_tv, args.device)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
