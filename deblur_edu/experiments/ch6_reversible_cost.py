"""Training memory of reversible against plain sub-decoders (chapter 6).

    python -m deblur_edu.experiments.ch6_reversible_cost [--columns 1 2 4] [--size 128] [--batch 8]
        [--width 16] [--levels 3] [--device cpu|cuda] [--json OUT]

For each number of sub-decoders it runs one training step (forward, the multi-decoder
loss, backward) of a :class:`~deblur_edu.learned.reversible.ReversibleDecoder` on a U-Net
encoder, once with ``reversible=True`` and once with ``reversible=False``, and reports the
allocator's peak during the step (``torch.cuda.max_memory_allocated`` on a GPU, the
profiler's memory timeline on a CPU; see :func:`deblur_edu.experiments.ch4_backward_cost.allocator_peak_bytes`)
and the ratio reversible / plain. The encoder is untrained: memory does not depend on the
weights' values.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .ch4_backward_cost import allocator_peak_bytes
from ..cli import positive_int, user_errors
from ..learned import ReversibleDecoder, UNet, multi_decoder_loss
from ..runtime import pick_device, provenance, write_json


def step_peak(columns: int, reversible: bool, size: int, batch: int, width: int, levels: int,
              device: torch.device) -> int | None:
    """The allocator's peak bytes of one training step of the decoder."""
    torch.manual_seed(0)
    decoder = ReversibleDecoder(UNet(width=width, levels=levels), columns=columns, reversible=reversible).to(device)
    g = torch.Generator().manual_seed(1)
    y = torch.rand(batch, 1, size, size, generator=g).to(device)
    x = torch.rand(batch, 1, size, size, generator=g).to(device)

    def step() -> None:
        decoder.zero_grad(set_to_none=True)
        multi_decoder_loss(decoder(y), x).backward()

    return allocator_peak_bytes(step, device)


def measure(columns: list[int], size: int, batch: int, width: int, levels: int, device: torch.device) -> list[dict]:
    rows = []
    for n in columns:
        rev = step_peak(n, True, size, batch, width, levels, device)
        plain = step_peak(n, False, size, batch, width, levels, device)
        rows.append({"columns": n, "reversible_peak_bytes": rev, "plain_peak_bytes": plain,
                     "ratio": rev / plain if rev and plain else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.ch6_reversible_cost", description=__doc__.split("\n")[0])
    p.add_argument("--columns", type=positive_int, nargs="+", default=[1, 2, 4])
    p.add_argument("--size", type=positive_int, default=128)
    p.add_argument("--batch", type=positive_int, default=8)
    p.add_argument("--width", type=positive_int, default=16)
    p.add_argument("--levels", type=positive_int, default=3)
    p.add_argument("--device", default=None)
    p.add_argument("--json", default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    with user_errors(p):
        device = pick_device(args.device)
    rows = measure(args.columns, args.size, args.batch, args.width, args.levels, device)
    print(f"peak training memory, {args.batch}×{args.size}², U-Net width {args.width}, {args.levels} levels, {device}")
    print(f"{'sub-decoders':>12}{'reversible MB':>15}{'plain MB':>10}{'ratio':>7}")
    for r in rows:
        print(f"{r['columns']:>12}{r['reversible_peak_bytes'] / 2**20:>15.1f}{r['plain_peak_bytes'] / 2**20:>10.1f}"
              f"{r['ratio']:>7.2f}")
    if args.json:
        write_json(args.json, {"settings": {k: v for k, v in vars(args).items() if k != "json"} | {"device": str(device)},
                               "rows": rows,
                               "provenance": provenance(device, data="random images",
                                                        command=" ".join([f"python -m {__spec__.name}", *argv]))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
