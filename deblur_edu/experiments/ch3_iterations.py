"""PSNR after every step of an unrolled method: does it rise up to the trained number of
steps, and does it hold beyond?

    python -m deblur_edu.experiments.ch3_iterations [--checkpoint rgdn-cpu] [--max-steps 24]
        [--sigmas 0.01 0.03] [--json benchmarks/rgdn_steps.json]

A learned optimizer is trained for a fixed number of steps T (RGDN: recursive supervision
on steps 1…T). Run past T, it may keep improving, stall, or collapse — the last would mean
it learned a T-step filter rather than an optimizer. One forward pass with
``return_all=True`` gives every step's estimate, so the curve costs one run of
``max_steps`` steps. Cases follow the benchmark protocol (:mod:`deblur_edu.bench.protocol`,
``valid`` boundary, the default test split).
"""

from __future__ import annotations

import sys

import torch

from ..bench.protocol import Benchmark, load_benchmark, score_crop
from ..cli import experiment_parser, noise_level, positive_int, user_errors
from ..metrics import psnr
from ..runtime import pick_device, provenance, write_json
from ..zoo import metadata, pretrained


@torch.no_grad()
def psnr_per_step(model: torch.nn.Module, bench: Benchmark, sigma: float, max_steps: int,
                  boundary: str = "valid", device: torch.device | str = "cpu") -> list[float]:
    """Mean PSNR (interior-cropped, clipped to [0, 1]) after steps 1, 2, …, ``max_steps``.

    ``model(y, k, sigma, steps=…, return_all=True)`` must return the list of every step's estimate
    (the model is told σ, as the benchmark tells every non-blind method).

    Example:
        >>> from deblur_edu.learned import RGDN
        >>> from deblur_edu.bench.protocol import load_benchmark
        >>> bench = load_benchmark("test", crop=64, fallback=True)
        >>> bench.kernels = bench.kernels[:1]
        >>> curve = psnr_per_step(RGDN(features=4, depth=2), bench, 0.01, max_steps=3)
        >>> len(curve)
        3
    """
    total = torch.zeros(max_steps, dtype=torch.float64)
    count = 0
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, boundary, sigma)
        y, x, k = y.to(device), x.to(device), k.to(device)
        outputs = model(y, k, sigma, steps=max_steps, return_all=True)
        r = score_crop(k)
        for t, x_t in enumerate(outputs):
            total[t] += psnr(x_t.clamp(0, 1), x, crop=r).double().sum().cpu()
        count += y.shape[0]
    return (total / count).tolist()


def main(argv: list[str] | None = None) -> int:
    p = experiment_parser(__spec__.name, __doc__)
    p.add_argument("--checkpoint", default="rgdn-cpu", help="a shipped checkpoint (deblur_edu/zoo/weights) or NAME.pt")
    p.add_argument("--max-steps", type=positive_int, default=24)
    p.add_argument("--sigmas", type=noise_level, nargs="+", default=[0.01, 0.03])
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    with user_errors(p):  # a missing checkpoint or data directory: one line, exit 2
        device = pick_device(args.device)
        model = pretrained(args.checkpoint, device=device)
        trained = metadata(args.checkpoint)["config"]["model"].get("steps")
        bench = load_benchmark("test", data_dir=args.data_dir, fallback=True)
    if bench.note:
        print("NOTE:", bench.note, file=sys.stderr)
    curves = {}
    for sigma in args.sigmas:
        curves[str(sigma)] = psnr_per_step(model, bench, sigma, args.max_steps, device=device)
        print(f"σ={sigma}: " + " ".join(f"{t + 1}:{v:.2f}" for t, v in enumerate(curves[str(sigma)])), flush=True)
    out = {"checkpoint": args.checkpoint, "trained_steps": trained, "boundary": "valid",
           "cases": len(bench.images) * len(bench.kernels), "note": bench.note, "psnr": curves,
           "provenance": provenance(device, split=bench.split, data=bench.data,
                                    command=" ".join([f"python -m {__spec__.name}", *argv]))}
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
