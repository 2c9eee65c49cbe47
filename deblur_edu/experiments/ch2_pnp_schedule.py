r"""Plug-and-play's schedule, chosen on the tune split: how many HQS iterations, from which level, which variant.

    python -m deblur_edu.experiments.ch2_pnp_schedule [--iterations 8 16 24] [--starts 0.192]
        [--variants plain x8] [--lams 0.1 0.23 0.5] [--json benchmarks/pnp_schedule.json] [--apply JSON]

For every (iterations, first denoising level, variant) and every λ of a coarse grid around DPIR's
0.23, the mean PSNR over the tune split (Set12 05, 07 × 8 seeded camera shakes, both boundaries)
at σ = 0.01 and 0.03, each schedule at its best λ. At each σ, the schedule with the best tune PSNR
there is chosen — like λ, the number of iterations that suits weak noise need not suit strong
noise — and written, with its λ, into the tuned defaults (``--apply`` writes a finished sweep's
choice again, from its JSON, without sweeping). Either way λ comes from the coarse grid, which
replaces a refined λ in the defaults: ``python -m deblur_edu.bench.tune --methods pnp`` refines it
again for the chosen schedules, on the same split (``make denoiser-checkpoint`` runs both).

Variants (:data:`VARIANTS`): ``plain`` hands the denoiser the data step's estimate as it is;
``x8`` is DPIR's: the estimate clamped to [0, 1] and, at iteration ``i``, turned by element
``i mod 8`` of the square's symmetries (and turned back after), so that the denoiser's
orientation-dependent errors average out over the iterations at no extra cost.

The benchmark's test images and kernels are never touched.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ..bench.run import evaluate
from ..bench.protocol import load_benchmark
from ..bench.methods import DEFAULTS_FILE, load_defaults
from ..cli import experiment_parser, positive_float, positive_int, user_errors
from ..runtime import pick_device, provenance, write_json
from ..zoo import available
from ..bench.tune import BOUNDARIES, TUNED_SIGMAS


#: how the denoiser is handed each estimate (keyword arguments of :func:`deblur_edu.learned.pnp.pnp_hqs`)
VARIANTS = {"plain": {"orientations": False, "clamp": False}, "x8": {"orientations": True, "clamp": True}}


def trial(defaults: dict, iterations: int, sigma_start: float, variant: str, lam: float) -> dict:
    """The tuned defaults with pnp's schedule and λ (at every σ) replaced by these."""
    schedule = {"iterations": iterations, "sigma_start": sigma_start, **VARIANTS[variant]}
    return {**defaults, "schedules": {**defaults.get("schedules", {}), "pnp": schedule},
            "methods": {**defaults["methods"], "pnp": {"lam": [lam] * len(TUNED_SIGMAS)}}}


def score(bench, device, defaults: dict, sigma: float) -> float:
    """Mean tune PSNR of pnp with ``defaults`` at ``sigma``, over both boundaries."""
    return sum(evaluate(bench, "pnp", b, sigma, device, defaults)["psnr"] for b in BOUNDARIES) / len(BOUNDARIES)


def sweep(bench, device, iterations: list[int], starts: list[float], lams: list[float],
          variants: list[str] = ("plain",)) -> list[dict]:
    """One row per schedule: at each tuned σ, the best λ of ``lams`` and its tune PSNR."""
    defaults = load_defaults()
    rows = []
    for n, start, variant in ((n, s, v) for n in iterations for s in starts for v in variants):
        t0 = time.time()
        best = {sigma: max((score(bench, device, trial(defaults, n, start, variant, lam), sigma), lam)
                           for lam in lams) for sigma in TUNED_SIGMAS}
        rows.append({"iterations": n, "sigma_start": start, "variant": variant, **VARIANTS[variant],
                     "psnr": {f"{s:g}": best[s][0] for s in TUNED_SIGMAS},
                     "lam": {f"{s:g}": best[s][1] for s in TUNED_SIGMAS},
                     "mean": sum(b[0] for b in best.values()) / len(best), "seconds": time.time() - t0})
        print(f"  iterations {n:3d}  start {start:.3f}  {variant:>5}  " + "  ".join(
            f"σ={s:g}: {best[s][0]:.2f} (λ={best[s][1]:.3g})" for s in TUNED_SIGMAS), flush=True)
    return rows


def best_rows(rows: list[dict]) -> list[dict]:
    """Per tuned σ, the row with the best tune PSNR at that σ (as for λ alone, what suits strong
    noise need not suit weak noise)."""
    return [max(rows, key=lambda r: r["psnr"][f"{s:g}"]) for s in TUNED_SIGMAS]


def choose(rows: list[dict]) -> tuple[list[dict], list[float]]:
    """The schedule and the λ of :func:`best_rows`, per tuned σ."""
    best = best_rows(rows)
    schedules = [{"iterations": r["iterations"], "sigma_start": r["sigma_start"], **VARIANTS[r["variant"]]} for r in best]
    return schedules, [r["lam"][f"{s:g}"] for r, s in zip(best, TUNED_SIGMAS)]


def write_choice(rows: list[dict], defaults_file: str) -> list[dict]:
    """Write :func:`choose`'s schedules (``schedules.pnp``, one per tuned σ) and λ per σ
    (``methods.pnp.lam``) into the tuned defaults; return the schedules. ``python -m
    deblur_edu.bench.tune --methods pnp`` can then refine λ on the method's finer grid."""
    schedules, lam = choose(rows)
    for s, row, l in zip(TUNED_SIGMAS, best_rows(rows), lam):
        print(f"chosen at σ={s:g}: iterations {row['iterations']}, sigma_start {row['sigma_start']:.4f}, "
              f"{row['variant']}, λ {l:g}")
    defaults = load_defaults(defaults_file)
    defaults.setdefault("schedules", {})["pnp"] = schedules
    defaults["methods"]["pnp"] = {"lam": lam}
    Path(defaults_file).write_text(json.dumps(defaults, indent=2) + "\n")
    print(f"wrote the schedules and λ into {defaults_file}; λ is the coarse grid's: refine it for these "
          f"schedules with python -m deblur_edu.bench.tune --methods pnp (make denoiser-checkpoint does)")
    return schedules


def main(argv: list[str] | None = None) -> int:
    p = experiment_parser(__spec__.name, __doc__)
    p.add_argument("--iterations", type=positive_int, nargs="+", default=[8, 16, 24])
    p.add_argument("--starts", type=positive_float, nargs="+", default=[49 / 255], help="first denoising levels, < 1")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["plain", "x8"],
                   help="how the denoiser is handed each estimate (plain; x8: clamped and turned, as DPIR)")
    p.add_argument("--lams", type=positive_float, nargs="+", default=[0.1, 0.23, 0.5])
    p.add_argument("--defaults", default=str(DEFAULTS_FILE),
                   help="the tuned defaults to write the chosen schedules and λ into (schedules.pnp, methods.pnp)")
    p.add_argument("--apply", default=None, metavar="JSON",
                   help="write the choice of a finished sweep (its --json) into --defaults, without sweeping")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    with user_errors(p):  # a bad level, a missing checkpoint or data: one line, exit 2, before the sweep
        if not all(s < 1 for s in args.starts):
            raise ValueError(f"--starts are denoising levels of images in [0, 1]: each must be < 1, got {args.starts}.")
        if args.apply and not Path(args.apply).is_file():
            raise FileNotFoundError(f"--apply: {args.apply} does not exist; it is the --json of a finished sweep.")
        if not args.apply:  # a sweep runs pnp: it needs the denoiser, a device and the tune split
            if not available("denoiser-cpu"):
                raise FileNotFoundError("pnp needs the checkpoint denoiser-cpu: make denoiser-checkpoint trains it.")
            device = pick_device(args.device)
            bench = load_benchmark("tune", data_dir=args.data_dir)
    if args.apply:  # a finished sweep's choice, without running it again; its JSON records what was chosen
        done = json.loads(Path(args.apply).read_text())
        chosen = write_choice(done["rows"], args.defaults)
        if done.get("chosen") != chosen:
            write_json(args.apply, {**done, "chosen": chosen})
        return 0
    rows = sweep(bench, device, args.iterations, args.starts, args.lams, args.variants)
    chosen = write_choice(rows, args.defaults)
    if args.json:
        write_json(args.json, {"rows": rows, "chosen": chosen,
                               "provenance": provenance(device, split="tune", data="set12 05, 07 x camera shakes",
                                                        command=" ".join([f"python -m {__spec__.name}", *argv]))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
