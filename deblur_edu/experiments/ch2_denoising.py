r"""How good a prior is the learned denoiser? Gaussian denoising on Set12 09–12 against TV.

    python -m deblur_edu.experiments.ch2_denoising [--checkpoint denoiser-cpu] [--sigmas 0.01 0.03 0.05 0.1]
        [--json benchmarks/denoiser.json]

For each σ: the noisy input ``y = x + σ n`` of each test image (256² centre crops, noise from a
per-case seed), TV denoising ``argmin ½‖x − y‖² + λ TV(x)`` by ADMM with λ chosen per σ on the
tune images (Set12 05, 07) from a grid, and the learned denoiser ``D(y, σ)``; mean PSNR (dB)
over the images. Plug-and-play (:mod:`deblur_edu.learned.pnp`) is only as good as this prior.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from ..bench.protocol import SPLITS, case_seed
from ..classical import tv_admm
from ..cli import experiment_parser, noise_level, user_errors
from ..data import centre_crop, set12
from ..metrics import psnr
from ..physics import add_noise
from ..runtime import pick_device, provenance, write_json
from ..zoo import metadata, pretrained

SIGMAS = [0.01, 0.03, 0.05, 0.1]
TV_GRID = [float(v) for v in np.logspace(-3, -0.5, 11)]
DELTA = torch.ones(1, 1, 1, 1)  # the identity "blur": TV deconvolution with it is TV denoising


def noisy_pair(images: dict[str, torch.Tensor], sigma: float, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, x)``: the images stacked, and their noisy versions (one seed per image and σ)."""
    x = torch.cat(list(images.values()))
    y = torch.cat([add_noise(img, sigma, torch.Generator().manual_seed(case_seed(split, name, 0, "denoise", sigma)))
                   for name, img in images.items()])
    return y, x


def tv_denoise(y: torch.Tensor, lam: float) -> torch.Tensor:
    """TV denoising by the library's ADMM (circular, 60 iterations, ρ = 10λ)."""
    return tv_admm(y, DELTA.to(y), lam=lam, boundary="circular")


def choose_tv_weight(images: dict[str, torch.Tensor], sigma: float) -> float:
    """The TV weight of the grid with the best mean PSNR on the tune images at ``sigma``."""
    y, x = noisy_pair(images, sigma, "tune")
    scores = [(float(psnr(tv_denoise(y, lam).clamp(0, 1), x).mean()), lam) for lam in TV_GRID]
    return max(scores)[1]


def measure(denoiser: torch.nn.Module, sigmas: list[float], device: torch.device,
            images: dict[str, torch.Tensor]) -> list[dict]:
    """One row per σ: PSNR of the noisy input, of TV (with its tuned λ) and of the denoiser.
    ``images``: Set12 by name, holding the test and tune split's images."""
    test = {n: centre_crop(images[n], SPLITS["test"]["crop"]).to(device) for n in SPLITS["test"]["images"]}
    tune = {n: images[n].to(device) for n in SPLITS["tune"]["images"]}
    rows = []
    with torch.no_grad():
        for sigma in sigmas:
            lam = choose_tv_weight(tune, sigma)
            y, x = noisy_pair(test, sigma, "test")
            rows.append({"sigma": sigma, "noisy": float(psnr(y.clamp(0, 1), x).mean()),
                         "tv": float(psnr(tv_denoise(y, lam).clamp(0, 1), x).mean()), "tv_lam": lam,
                         "denoiser": float(psnr(denoiser(y, sigma).clamp(0, 1), x).mean())})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'σ':>6} {'noisy':>8} {'TV':>8} {'denoiser':>9} {'gain over TV':>13}"]
    for r in rows:
        lines.append(f"{r['sigma']:>6g} {r['noisy']:>8.2f} {r['tv']:>8.2f} {r['denoiser']:>9.2f} {r['denoiser'] - r['tv']:>+13.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = experiment_parser(__spec__.name, __doc__)
    p.add_argument("--checkpoint", default="denoiser-cpu", help="a shipped name or a path to NAME.pt")
    p.add_argument("--sigmas", type=noise_level, nargs="+", default=SIGMAS)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    with user_errors(p):  # a bad level, a missing checkpoint or data: one line, exit 2, before the run
        if not all(0 < s < 1 for s in args.sigmas):
            raise ValueError(f"--sigmas must lie in (0, 1), got {args.sigmas}.")
        device = pick_device(args.device)
        if metadata(args.checkpoint)["model_name"] != "denoiser":
            raise ValueError(f"{args.checkpoint} is not a denoiser checkpoint.")
        denoiser = pretrained(args.checkpoint, device=device)
        images = set12(SPLITS["test"]["images"] + SPLITS["tune"]["images"], args.data_dir)
    rows = measure(denoiser, args.sigmas, device, images)
    print(format_table(rows))
    if args.json:
        write_json(args.json, {"rows": rows, "checkpoint": str(args.checkpoint),
                               "provenance": provenance(device, split="test", data="set12 09-12, tune: 05, 07",
                                                        command=" ".join([f"python -m {__spec__.name}", *argv]))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
