"""Choose every method's σ-dependent weight on the *tune* split; write ``tuned_defaults.json``.

Usage::

    python -m deblur_edu.bench.tune [--out deblur_edu/bench/tuned_defaults.json] [--methods a,b]

For each method with a weight and each tuned noise level σ ∈ {0.01, 0.03}, every value of
the method's grid (:mod:`deblur_edu.bench.methods`) is scored by the mean PSNR over the tune
split — Set12 05 and 07, 224² crops, 8 seeded camera-shake kernels — on *both* boundary
models (a method never learns which one made y); the best value is kept. The benchmark's
test images and Levin's kernels are never touched.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .run import evaluate
from .protocol import load_benchmark
from ..cli import names, user_errors
from .methods import DEFAULTS_FILE, METHODS

TUNED_SIGMAS = [0.01, 0.03]
BOUNDARIES = ["circular", "valid"]


def tune_method(bench, name: str, defaults: dict, device: torch.device) -> list[float]:
    """Best grid value per tuned σ for one method; ``defaults`` holds methods tuned so far."""
    method = METHODS[name]
    best = []
    for i, sigma in enumerate(TUNED_SIGMAS):
        scores = []
        for w in method.grid:
            trial = json.loads(json.dumps(defaults))
            trial["methods"][name] = {method.weight: [w] * len(TUNED_SIGMAS)}
            p = sum(evaluate(bench, name, b, sigma, device, trial)["psnr"] for b in BOUNDARIES) / len(BOUNDARIES)
            scores.append((p, w))
        p, w = max(scores)
        edge = " (at the grid's edge)" if w in (method.grid[0], method.grid[-1]) else ""
        print(f"  {name:<16} σ={sigma:<5} {method.weight}={w:.3g}  tune PSNR {p:.2f}{edge}", flush=True)
        best.append(w)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.bench.tune", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULTS_FILE))
    p.add_argument("--methods", type=names, default=None, help="comma-separated subset (default: all with a weight)")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    device = torch.device("cpu")
    tunable = [n for n, m in METHODS.items() if m.weight and m.available()]
    with user_errors(p):  # an untunable method or missing data: one line, exit 2
        for name in args.methods or []:
            if name in METHODS and METHODS[name].weight and not METHODS[name].available():
                raise FileNotFoundError(f"{name!r} needs the checkpoint {METHODS[name].checkpoint}, which is missing; "
                                        f"train it first (see the Makefile).")
            if name not in tunable:
                raise ValueError(f"{name!r} has no weight to tune; choose from {', '.join(tunable)}.")
        bench = load_benchmark("tune", data_dir=args.data_dir)
    methods = args.methods or tunable
    out_path = Path(args.out)
    defaults = json.loads(out_path.read_text()) if out_path.is_file() else {}
    defaults.update({"sigmas": TUNED_SIGMAS, "split": "tune", "boundaries": BOUNDARIES,
                     "recipe": "python -m deblur_edu.bench.tune"})
    defaults.setdefault("methods", {})
    start = time.time()
    for name in methods:  # registry order: tv is tuned before the hyper-Laplacian that starts from it
        defaults["methods"][name] = {METHODS[name].weight: tune_method(bench, name, defaults, device)}
        out_path.write_text(json.dumps(defaults, indent=2) + "\n")
    print(f"wrote {out_path} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
