r"""Plug-and-play's schedule, chosen on the tune split: how many HQS iterations, from which level.

    python -m deblur_edu.experiments.ch2_pnp_schedule [--iterations 8 16 24] [--starts 0.1 0.19 0.3]
        [--json benchmarks/pnp_schedule.json]

For every (iterations, first denoising level) and every λ of the ``pnp`` method's grid, the mean
PSNR over the tune split (Set12 05, 07 × 8 seeded camera shakes, both boundaries) at σ = 0.01 and
0.03. A schedule's score is the mean over both σ, each at its best λ; the best schedule is
printed with the PSNR it buys per σ. The benchmark's test images and kernels are never touched;
``python -m deblur_edu.bench.tune --methods pnp`` then tunes λ per σ for the chosen schedule.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ..bench.run import evaluate
from ..bench.protocol import load_benchmark
from ..bench.methods import METHODS, PNP, load_defaults
from ..runtime import pick_device, provenance, write_json
from ..bench.tune import BOUNDARIES, TUNED_SIGMAS


def score(bench, device, defaults: dict, sigma: float, lam: float) -> float:
    trial = {**defaults, "methods": {**defaults["methods"], "pnp": {"lam": [lam] * len(TUNED_SIGMAS)}}}
    return sum(evaluate(bench, "pnp", b, sigma, device, trial)["psnr"] for b in BOUNDARIES) / len(BOUNDARIES)


def sweep(bench, device, iterations: list[int], starts: list[float], lams: list[float]) -> list[dict]:
    defaults = load_defaults()
    rows = []
    saved = dict(PNP)
    try:
        for n in iterations:
            for start in starts:
                PNP.update(iterations=n, sigma_start=start)
                t0 = time.time()
                best = {}
                for sigma in TUNED_SIGMAS:
                    scores = [(score(bench, device, defaults, sigma, lam), lam) for lam in lams]
                    best[sigma] = max(scores)
                rows.append({"iterations": n, "sigma_start": start,
                             "psnr": {f"{s:g}": best[s][0] for s in TUNED_SIGMAS},
                             "lam": {f"{s:g}": best[s][1] for s in TUNED_SIGMAS},
                             "mean": sum(b[0] for b in best.values()) / len(best), "seconds": time.time() - t0})
                print(f"  iterations {n:3d}  start {start:.3f}  " + "  ".join(
                    f"σ={s:g}: {best[s][0]:.2f} (λ={best[s][1]:.3g})" for s in TUNED_SIGMAS), flush=True)
    finally:
        PNP.clear()
        PNP.update(saved)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.ch2_pnp_schedule", description=__doc__.split("\n")[0])
    p.add_argument("--iterations", type=int, nargs="+", default=[8, 16, 24])
    p.add_argument("--starts", type=float, nargs="+", default=[0.1, 49 / 255, 0.3])
    p.add_argument("--json", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--data-dir", default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if min(args.iterations) < 1 or not all(0 < s < 1 for s in args.starts):
        p.error("--iterations must be >= 1 and --starts in (0, 1).")
    try:
        device = pick_device(args.device)
        bench = load_benchmark("tune", data_dir=args.data_dir)
    except (OSError, ValueError) as err:
        p.error(str(err))
    rows = sweep(bench, device, args.iterations, args.starts, METHODS["pnp"].grid)
    best = max(rows, key=lambda r: r["mean"])
    print(f"chosen: iterations {best['iterations']}, sigma_start {best['sigma_start']:.4f} "
          f"(mean tune PSNR {best['mean']:.2f} dB)")
    if args.json:
        write_json(args.json, {"rows": rows, "chosen": {"iterations": best["iterations"], "sigma_start": best["sigma_start"]},
                               "provenance": provenance(device, split="tune", data="set12 05, 07 x camera shakes",
                                                        command=" ".join([f"python -m {__spec__.name}", *argv]))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
