r"""Where the hqs DEQ starts: its denoising level and data weight, chosen on the tune split before training.

    python -m deblur_edu.experiments.ch4_hqs_start [--factors 1.5 2.5 4 6] [--lams 0.3]
        [--json benchmarks/hqs_start.json]

The hqs DEQ of chapter 4 (:class:`~deblur_edu.learned.DEQ` with ``form="hqs"``) is plug-and-play's
half-quadratic splitting run to its fixed point at one denoising level ``s(σ) = aσ + b``, with data
weight ``α = λσ²/s²``. Before fine-tuning, its map is chapter 2's denoiser (``denoiser-cpu``)
as it is, so the untrained DEQ is already a deblurring method, and the three numbers decide how
good. For each tuned σ (0.01, 0.03), each level ``s = cσ`` (``c`` in ``--factors``) and each λ, this
runs the untrained map on the tune split (Set12 05, 07 × 8 seeded camera shakes, ``valid``
boundary) and reports the mean PSNR and how many solves stopped at the cap. At each σ the best
(c, λ) is chosen; the line through the two chosen levels gives ``a`` and ``b``, and λ is the
chosen λ of the two with the better mean tune PSNR: starting values for the training preset
``deq-hqs-cpu`` (``level_slope``, ``level_floor``, ``strength``).

The shipped checkpoints started from an earlier, smaller pilot's choice, ``s = 1.75σ + 0.0225``
(4σ at σ = 0.01, 2.5σ at σ = 0.03, λ = 0.3). The full run (``benchmarks/hqs_start.json``) picks the
same 4σ and λ, and 1.5σ at σ = 0.03, by 0.06 dB over 2.5σ — a tie at this split's size. A test checks
that the preset's starting level is, at each tuned σ, within 0.1 dB of the best level measured there.

The benchmark's test images and kernels are never touched.
"""

from __future__ import annotations

import sys
import time
import warnings

import torch

from ..bench.protocol import load_benchmark, score_crop
from ..bench.tune import TUNED_SIGMAS
from ..cli import experiment_parser, positive_float, user_errors
from ..learned import DEQ
from ..metrics import psnr
from ..runtime import pick_device, provenance, write_json
from ..train import load_config
from ..zoo import available, pretrained
from ..zoo.registry import architecture

#: the levels tried, as multiples of σ, and the data weights λ
FACTORS = [1.5, 2.5, 4.0, 6.0]
LAMS = [0.3]
#: b of a level that is a pure multiple of σ (b must be > 0; this is far below any σ tried)
NO_FLOOR = 1e-9


def untrained_map(factor: float, lam: float, device: torch.device) -> DEQ:
    """The preset's DEQ with chapter 2's denoiser, at level ``s = factor·σ`` and weight λ, for evaluation."""
    cfg = {**architecture("deq", load_config("deq", "hqs-cpu")["model"]),
           "level_slope": factor, "level_floor": NO_FLOOR, "strength": lam}
    net = DEQ(**cfg)
    net.denoiser.load_state_dict(pretrained("denoiser-cpu").state_dict())
    return net.to(device).eval()


def score(net: DEQ, bench, sigma: float, device: torch.device) -> tuple[float, int]:
    """Mean tune PSNR (valid boundary) of ``net`` at ``sigma``, and the solves that stopped at the cap."""
    scores, capped = [], 0
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, "valid", sigma)
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            out = net(y.to(device), k.to(device), sigma)
        capped += sum("no convergence" in str(w.message) for w in caught)
        scores.append(psnr(out.clamp(0, 1).cpu(), x, crop=score_crop(k)))
    return float(torch.cat(scores).mean()), capped


def choose(rows: list[dict]) -> dict:
    """λ with the best mean over σ of its best level; at that λ, the best factor per σ; ``a`` and ``b`` of
    the line through the two chosen levels ``(σ, factor·σ)`` (when that line has ``a`` or ``b`` ≤ 0, which
    the DEQ cannot take: ``s = aσ`` with ``a`` the mean of the two factors).

    Example:
        >>> rows = [{"sigma": s, "factor": f, "lam": 0.3, "psnr": -abs(f - (4 if s == 0.01 else 2.5))}
        ...         for s in (0.01, 0.03) for f in (1.5, 2.5, 4.0)]
        >>> c = choose(rows); round(c["level_slope"], 4), round(c["level_floor"], 4), c["strength"]
        (1.75, 0.0225, 0.3)
    """
    def best(sigma: float, lam: float) -> dict:
        return max((r for r in rows if r["sigma"] == sigma and r["lam"] == lam), key=lambda r: r["psnr"])

    lams = sorted({r["lam"] for r in rows})
    lam = max(lams, key=lambda v: sum(best(s, v)["psnr"] for s in TUNED_SIGMAS))
    picks = [best(s, lam) for s in TUNED_SIGMAS]
    (s1, s2), (l1, l2) = TUNED_SIGMAS, (picks[0]["factor"] * TUNED_SIGMAS[0], picks[1]["factor"] * TUNED_SIGMAS[1])
    slope = (l2 - l1) / (s2 - s1)
    if not (slope > 0 and l1 - slope * s1 > 0):  # the DEQ's a and b are positive: fall back to a multiple of σ
        slope = (l1 / s1 + l2 / s2) / 2
        return {"best": picks, "level_slope": slope, "level_floor": NO_FLOOR, "strength": lam}
    return {"best": picks, "level_slope": slope, "level_floor": l1 - slope * s1, "strength": lam}


def main(argv: list[str] | None = None) -> int:
    p = experiment_parser(__spec__.name, __doc__)
    p.add_argument("--factors", type=positive_float, nargs="+", default=FACTORS, help="levels s = factor·σ to try")
    p.add_argument("--lams", type=positive_float, nargs="+", default=LAMS, help="data weights λ to try")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    with user_errors(p):
        if not available("denoiser-cpu"):
            raise FileNotFoundError("the hqs DEQ starts from the checkpoint denoiser-cpu: make denoiser-checkpoint trains it.")
        device = pick_device(args.device)
        bench = load_benchmark("tune", data_dir=args.data_dir)
    rows = []
    for sigma in TUNED_SIGMAS:
        for factor in args.factors:
            for lam in args.lams:
                start = time.time()
                value, capped = score(untrained_map(factor, lam, device), bench, sigma, device)
                rows.append({"sigma": sigma, "factor": factor, "lam": lam, "psnr": value, "capped": capped,
                             "seconds": time.time() - start})
                print(f"σ = {sigma:<5} s = {factor:g}σ  λ = {lam:g}:  tune PSNR {value:.2f} dB, "
                      f"{capped} of {len(bench.kernels)} solves at the cap", flush=True)
    chosen = choose(rows)
    print(f"start: level_slope {chosen['level_slope']:.4g}, level_floor {chosen['level_floor']:.4g}, "
          f"strength {chosen['strength']:.4g}")
    if args.json:
        write_json(args.json, {"rows": rows, "chosen": chosen,
                               "provenance": provenance(device, split="tune", data="set12 05, 07 x camera shakes",
                                                        command=" ".join([f"python -m {__spec__.name}", *argv]))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
