r"""What a kernel's place in its frame costs a blind method (chapter 5, §5.3).

    python -m deblur_edu.experiments.ch5_blind_shift [--json benchmarks/blind_shift.json]

From y alone a kernel is known only up to a shift: ``k`` shifted by d blurs ``x`` shifted by −d
into the same y. A blind method settles the shift by a convention — here, the kernel's centre of
mass is its centre pixel — and its estimate x̂ is then shifted against the truth by however far
the true kernel's centre of mass lies from its frame's centre. This measures what that costs
with no estimation error: border-aware TV (the benchmark's, tuned weight) told the true kernel as
given, against TV told the true kernel re-centred on its centre of mass
(:func:`~deblur_edu.classical.blind_deconvolution.centre_kernel`) — the best a blind method can
know — on Levin × Set12 (``test`` split, ``valid`` boundary), unaligned and aligned before
scoring (:mod:`deblur_edu.metrics.alignment`, ±4 px). Aligned, what is left between the two is
the cost of the re-centring's fractional, bilinear shift (a two-tap blur of the kernel). It also
records each kernel's offset. Nothing is tuned here.
"""

from __future__ import annotations

import sys

import torch

from ..bench.methods import get_method, load_defaults
from ..bench.protocol import load_benchmark, score_crop
from ..bench.tune import TUNED_SIGMAS
from ..classical.blind_deconvolution import centre_kernel, centre_of_mass
from ..cli import experiment_parser, user_errors
from ..kernels import pad_to
from ..metrics import psnr
from ..metrics.alignment import align_to
from ..runtime import pick_device, provenance, write_json

#: the alignment searched (pixels), as the blind benchmarks' ``--align``
ALIGN = 4


def recentred(k: torch.Tensor) -> torch.Tensor:
    """The kernel moved so that its centre of mass is its frame's centre (room added so nothing wraps)."""
    side = max(k.shape[-2:]) + 8
    return centre_kernel(pad_to(k, side).double()).to(k.dtype)


def offsets(kernels: list[torch.Tensor]) -> list[list[float]]:
    """Each kernel's centre of mass relative to its frame's centre, (rows, columns) in pixels."""
    return [[float(centre_of_mass(k.double(), d)) for d in (-2, -1)] for k in kernels]


@torch.no_grad()
def scores(bench, sigma: float, device: torch.device) -> dict:
    """Mean PSNR of TV told k as given and told k re-centred, unaligned and aligned."""
    tv, defaults = get_method("tv"), load_defaults()
    out: dict[str, list[torch.Tensor]] = {"as given": [], "re-centred": [], "as given, aligned": [],
                                          "re-centred, aligned": []}
    for ki, k in enumerate(bench.kernels):
        y, x = (t.to(device) for t in bench.batch(ki, "valid", sigma))
        r = score_crop(k)
        for label, kernel in (("as given", k), ("re-centred", recentred(k))):
            x_hat = tv(y, kernel.to(device), sigma, defaults).clamp(0, 1)
            out[label].append(psnr(x_hat, x, crop=r).cpu())
            aligned = align_to(x_hat, x, ALIGN, r)[0].clamp(0, 1)
            out[label + ", aligned"].append(psnr(aligned, x, crop=r + ALIGN + 1).cpu())
    return {label: float(torch.cat(v).mean()) for label, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = experiment_parser(__spec__.name, __doc__)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    with user_errors(p):
        device = pick_device(args.device)
        bench = load_benchmark("test", data_dir=args.data_dir)
    rows = {str(sigma): scores(bench, sigma, device) for sigma in TUNED_SIGMAS}
    for sigma, row in rows.items():
        print(f"σ = {sigma}: TV told k " + ", ".join(f"{label} {v:.2f}" for label, v in row.items()) + " dB")
    shifts = offsets(bench.kernels)
    print("kernels' centres of mass off their frames' centres (rows, columns):",
          ", ".join(f"({a:+.1f}, {b:+.1f})" for a, b in shifts))
    if args.json:
        write_json(args.json, {"psnr": rows, "offsets": shifts, "align": ALIGN, "provenance": provenance(
            device, split="test", data=bench.data, command=" ".join([f"python -m {__spec__.name}", *argv]))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
