r"""The classical blind baseline's settings, compared on the tune split (chapter 5, §5.3).

    python -m deblur_edu.experiments.ch5_blind_settings [--json benchmarks/blind_settings.json]

The benchmark's ``blind-tv`` estimates the kernel from y (an L0 gradient prior, coarse to fine;
:func:`~deblur_edu.classical.blind_deconvolution.blind_deconvolve`) and deconvolves with the
benchmark's TV at the estimated noise level. Its estimate depends on a few settings:
alternations per pyramid level, the cleaning threshold and minimum piece mass, and the kernel's
ridge weight γ, and how fast the L0 weight λ decays. This runs the defaults and each one-at-a-time change of them (:data:`VARIANTS`)
on the tune split (Set12 05, 07 × 8 seeded camera shakes of 25 px, ``valid`` boundary) at both
tuned noise levels, and reports the mean PSNR over the two. The defaults are the settings to
beat; a test checks that none of the variants beats them by more than 0.1 dB.

The benchmark's test images and kernels (and the blind split's) are never touched.
"""

from __future__ import annotations

import sys
import time

import torch

from ..bench.methods import get_method
from ..bench.protocol import load_benchmark, score_crop
from ..bench.tune import TUNED_SIGMAS
from ..classical.blind_deconvolution import blind_deconvolve
from ..cli import experiment_parser, user_errors
from ..metrics import psnr
from ..runtime import pick_device, provenance, write_json

#: the defaults ({}) and one-at-a-time changes of them
VARIANTS: list[dict] = [
    {}, {"iterations": 5}, {"iterations": 15}, {"threshold": 0.05}, {"threshold": 0.2},
    {"min_mass": 0.05}, {"min_mass": 0.2}, {"gamma": 0.5}, {"gamma": 8.0}, {"lam_decay": 1.02}, {"lam_decay": 1.1},
]


def score(settings: dict, bench, sigma: float, device: torch.device) -> float:
    """Mean tune PSNR of ``blind-tv`` with ``settings`` at ``sigma`` (valid boundary)."""
    scores = []
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, "valid", sigma)
        x_hat, _ = blind_deconvolve(y.to(device), get_method("tv"), **settings)
        scores.append(psnr(x_hat.clamp(0, 1).cpu(), x, crop=score_crop(k)))
    return float(torch.cat(scores).mean())


def label(settings: dict) -> str:
    """``defaults`` or ``name=value`` of the one change."""
    return ", ".join(f"{k}={v:g}" for k, v in settings.items()) or "defaults"


def main(argv: list[str] | None = None) -> int:
    p = experiment_parser(__spec__.name, __doc__)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    with user_errors(p):
        device = pick_device(args.device)
        bench = load_benchmark("tune", data_dir=args.data_dir)
    rows = []
    for settings in VARIANTS:
        start = time.time()
        by_sigma = {sigma: score(settings, bench, sigma, device) for sigma in TUNED_SIGMAS}
        mean = sum(by_sigma.values()) / len(by_sigma)
        rows.append({"settings": settings, "psnr": {str(s): v for s, v in by_sigma.items()}, "mean_psnr": mean,
                     "seconds": time.time() - start})
        print(f"{label(settings):<16}" + "".join(f"  σ={s}: {v:.2f}" for s, v in by_sigma.items())
              + f"   mean {mean:.2f} dB", flush=True)
    best = max(rows, key=lambda r: r["mean_psnr"])
    print(f"best: {label(best['settings'])} ({best['mean_psnr']:.2f} dB; defaults {rows[0]['mean_psnr']:.2f} dB)")
    if args.json:
        write_json(args.json, {"rows": rows, "provenance": provenance(
            device, split="tune", data="set12 05, 07 x camera shakes",
            command=" ".join([f"python -m {__spec__.name}", *argv]))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
