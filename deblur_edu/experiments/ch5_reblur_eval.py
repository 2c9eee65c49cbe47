r"""Chapter 5's evaluation: does the reblurring module reblur, and are reblurring-trained images sharper?

    python -m deblur_edu.experiments.ch5_reblur_eval [--split blind|tune] [--sigma 0.01] [--align 4]
        [--tta-steps 5] [--tta-lr 3e-5] [--tta-parameters all|decoder|head] [--tta-sweep LRS]
        [--lpips DIR] [--json OUT] [--readme README.md] [--record] [--data-dir DIR]

Every deblurrer runs on the split's cases (``blind``: Set12 09–12 × 8 unseen camera shakes of 13 to
31 px, the blind benchmark; ``valid`` blur, σ = 0.01). They share one first stage, blind TV's
estimate ``x̂₀`` of each blurry image (:mod:`deblur_edu.bench.methods`), so the rows differ only by
their second stage. Measured per case, on the scored interior:

- **PSNR / SSIM** against the sharp image, after aligning each estimate to it within ±``align`` px
  (as the blind benchmark does, :mod:`deblur_edu.metrics.alignment`);
- **blur effect** (:func:`deblur_edu.metrics.sharpness.blur_effect`, Crété-Roffet et al. 2007):
  no reference, no training, lower = sharper (on the unaligned estimate: a fractional shift blurs);
- two measures of an *independent judge* ``J`` (``reblur-judge``: another reblurring module, trained like the
  critic but from another seed on other draws of the bank, and never part of a deblurrer's training):
  **reblur gap** ``‖J(x̂) − x̂‖₁`` (mean, ×10³): how much blur ``J`` finds to amplify, lower =
  cleaner; **reblurring PSNR** ``PSNR(J(x̂), y)``: how well ``J`` rebuilds the blurry input;
- **LPIPS** (:mod:`deblur_edu.metrics.lpips`) when its weights are present (``--lpips DIR``).

Findings written into one JSON:

- ``modules``: does each reblurring module (the critic ``reblur-module-cpu`` and the judge) reblur? Beside them, a
  fixed Gaussian blur (:class:`FixedBlur`) as a reference that knows nothing of the deblurrer.
  ``L_blur = ‖M_R(L̂) − y‖₁`` against the identity's ``‖L̂ − y‖₁`` (their ratio: below 1 means
  it learned to rebuild the blur), and its change ``‖M_R(z) − z‖₁`` on the deblurred ``L̂`` against
  the sharp ``S`` and the deblurred sharp ``M_D(S)`` (a module that measures leftover blur changes
  ``L̂`` more), with ``L̂`` the two-stage deblurrer's output on the test cases;
- ``results``: the table of deblurrers (means) and ``per_case`` scores;
- ``differences``: paired 95 % bootstrap intervals (:func:`deblur_edu.metrics.paired_bootstrap`)
  of ``reblur − reblur-l1-ft`` (the reblurring loss against its L1-only control) and
  ``reblur-tta − reblur`` (test-time adaptation against none), and whether each is *sharper* (both
  intervals below 0) at a PSNR cost ≤ 0.3 dB;
- ``trend``: "clean images are hard to reblur" — Spearman's rank correlation of deblurring PSNR
  and reblurring PSNR over the deblurrers; reported only when the judge reblurs
  (its ``L_blur`` ≤ 0.85 × the identity's), since a judge near the identity measures nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import torch
from torch import nn

from ..bench.methods import METHODS, REBLUR_TTA, adapt_each, load_defaults
from ..bench.protocol import Benchmark, interior, load_benchmark, score_crop
from ..bench.report import block_bounds, refuse_fallback, replace_block
from ..cli import names, noise_level, positive_float, positive_int, user_errors
from ..learned import ReblurDeblurrer
from ..metrics import blur_effect, paired_bootstrap, psnr, ssim
from ..metrics.alignment import align_to
from ..metrics.lpips import load_lpips
from ..kernels import gaussian
from ..physics import blur
from ..runtime import git_commit, pick_device, provenance, write_json
from ..zoo import pretrained
from ..zoo.checkpoints import write_metrics
from ..zoo.shipped import checkpoint_path

#: the measures, and whether higher is better (reblurring PSNR: neither, it is the trend's axis)
MEASURES = {"psnr": True, "ssim": True, "blur_effect": False, "reblur_gap": False, "reblur_psnr": None,
            "lpips": False}
#: the rows of the table, in order: the blurry input, the shared first stage, the L1 two-stage deblurrer,
#: its fine-tunings with L1 alone (the control) and with L1 + reblurring, and test-time adaptation
TABLE = ("blurred", "blind-tv", "blind-refiner", "reblur-l1-ft", "reblur", "reblur-tta")
#: more deblurrers for the trend only (told the kernel: they span the range of deblurring quality)
TREND_EXTRA = ("wiener-taper", "tv")
#: the shipped second stages, by table row
SECOND_STAGES = {"blind-refiner": "blind-refiner-cpu", "reblur-l1-ft": "reblur-l1-ft-cpu", "reblur": "reblur-cpu"}
#: the acceptance: a module reblurs when its L_blur is at most this times the identity's
REBLURS_RATIO = 0.85
#: the acceptance: the largest PSNR a sharper deblurrer may cost
MAX_PSNR_COST = 0.3
#: the width (px) of the fixed Gaussian blur measured beside the two modules, as a reference
REFERENCE_BLUR = 2.0
#: the two comparisons: (name, baseline, treatment)
COMPARISONS = (("reblur loss", "reblur-l1-ft", "reblur"), ("test-time adaptation", "reblur", "reblur-tta"))


def reblur_gap(judge: nn.Module, x_hat: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """``mean |J(x̂) − x̂|`` per image, ×10³, on the interior: how much blur the judge ``J`` finds
    to amplify in ``x̂`` (small for a clean image)."""
    with torch.no_grad():
        change = (judge(x_hat) - x_hat).abs()
    return 1e3 * interior(change, crop).mean(dim=(1, 2, 3))


def reblurring_psnr(judge: nn.Module, x_hat: torch.Tensor, y: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """``PSNR(J(x̂), y)`` per image: how well the judge rebuilds the blurry input ``y`` from ``x̂``."""
    with torch.no_grad():
        return psnr(judge(x_hat).clamp(0, 1), y.clamp(0, 1), crop=crop)


def scores(x_hat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, crop: int, judge: nn.Module,
           lpips: nn.Module | None = None, align: int = 0) -> dict[str, torch.Tensor]:
    """Every measure of the module docstring, per image. PSNR, SSIM and LPIPS after aligning ``x̂``
    to ``x`` within ±``align`` px; every measure on the interior ``crop`` (+ ``align + 1`` when aligning)."""
    x_hat = x_hat.clamp(0, 1)
    if align:
        crop = crop + align + 1
        aligned = align_to(x_hat, x, align, crop - align - 1)[0].clamp(0, 1)
    else:
        aligned = x_hat
    out = {"psnr": psnr(aligned, x, crop=crop), "ssim": ssim(aligned, x, crop=crop),
           "blur_effect": blur_effect(interior(x_hat, crop)), "reblur_gap": reblur_gap(judge, x_hat, crop),
           "reblur_psnr": reblurring_psnr(judge, x_hat, y, crop)}
    if lpips is not None:
        with torch.no_grad():
            out["lpips"] = lpips(interior(aligned, crop), interior(x, crop))
    return out


def module_quality(M_R: nn.Module, deblurred: torch.Tensor, deblurred_sharp: torch.Tensor, y: torch.Tensor,
                   x: torch.Tensor, crop: int) -> dict[str, torch.Tensor]:
    """Per image: a reblurring module's ``L_blur = ‖M_R(L̂) − y‖₁`` and the identity's ``‖L̂ − y‖₁``, and its
    change ``‖M_R(z) − z‖₁`` on ``L̂`` (``deblurred``), ``S`` (``x``) and ``M_D(S)`` (``deblurred_sharp``):
    means over the interior (see the module docstring)."""

    def mean(t: torch.Tensor) -> torch.Tensor:
        return interior(t.abs(), crop).mean(dim=(1, 2, 3))

    with torch.no_grad():
        return {"l_blur": mean(M_R(deblurred) - y), "l_blur_identity": mean(deblurred - y),
                "change_deblurred": mean(M_R(deblurred) - deblurred), "change_sharp": mean(M_R(x) - x),
                "change_deblurred_sharp": mean(M_R(deblurred_sharp) - deblurred_sharp)}


class FixedBlur(nn.Module):
    """A reference "module" that knows nothing of the deblurrer: a Gaussian blur of width ``width`` px. It rebuilds
    much of y from any sharp-looking image, and changes a sharp image more than a deblurred one: it measures detail,
    not leftover blur (chapter 5, exercise 2)."""

    def __init__(self, width: float = 2.0):
        super().__init__()
        self.register_buffer("kernel", gaussian(2 * int(6 * width) + 1, width))  # ±6 widths: the whole bell

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return blur(z, self.kernel.to(z), "replicate")


def summarise_module(values: dict[str, list[torch.Tensor]]) -> dict[str, float | bool]:
    """Means over the cases of :func:`module_quality`, the ratio ``L_blur / L_blur(identity)`` and the
    two acceptance checks: it reblurs (ratio ≤ :data:`REBLURS_RATIO`) and it changes deblurred images
    more than sharp ones."""
    m = {name: float(torch.cat(v).mean()) for name, v in values.items()}
    m["ratio"] = m["l_blur"] / m["l_blur_identity"]
    m["reblurs"] = m["ratio"] <= REBLURS_RATIO
    m["more_on_deblurred"] = m["change_deblurred"] > max(m["change_sharp"], m["change_deblurred_sharp"])
    return m


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (no ties expected): +1 for a perfectly monotone trend."""
    ra = torch.tensor(a).argsort().argsort().double()
    rb = torch.tensor(b).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def trend(points: list[dict]) -> dict:
    """The deblurrers' mean scores (rows with a ``name``) and the rank correlation of their deblurring
    PSNR and reblurring PSNR."""
    rho = spearman([p["psnr"] for p in points], [p["reblur_psnr"] for p in points])
    return {"points": [{k: p[k] for k in ("name", "psnr", "reblur_psnr")} for p in points], "spearman": rho}


Estimate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def estimators(tta: dict, extra: tuple[str, ...] = ()) -> dict[str, Estimate]:
    """Each deblurrer as ``f(y, k, σ, x̂₀)``: the second stages are handed the shared first stage ``x̂₀``."""
    defaults = load_defaults()

    models = {name: pretrained(ckpt) for name, ckpt in SECOND_STAGES.items()}  # loaded once, outside the timed calls

    def second(model: nn.Module) -> Estimate:
        return lambda y, k, s, first: model(y, first=first)

    out: dict[str, Estimate] = {"blurred": lambda y, k, s, first: y, "blind-tv": lambda y, k, s, first: first}
    out |= {name: second(model) for name, model in models.items()}
    out["reblur-tta"] = lambda y, k, s, first: adapt_each(models["reblur"], y, first, tta)  # reblur-cpu, adapted
    out |= {name: (lambda n: lambda y, k, s, first: METHODS[n](y, k, s, defaults))(name) for name in extra}
    return out


def evaluate(bench: Benchmark, judge: nn.Module, critic: ReblurDeblurrer, boundary: str, sigma: float, align: int,
             tta: dict, extra: tuple[str, ...] = TREND_EXTRA, lpips: nn.Module | None = None,
             log: Callable[[str], None] = print) -> dict:
    """Every deblurrer on every case (kernel by kernel, each kernel's images in the benchmark's order: ``case_ids``):
    per-case scores, seconds per image, and the quality of the critic, the judge and a fixed blur."""
    defaults = load_defaults()
    fns = estimators(tta, extra)
    per_case: dict[str, dict[str, list[torch.Tensor]]] = {name: {} for name in fns}
    seconds = dict.fromkeys(fns, 0.0)
    graders = {"critic": critic.reblurrer, "judge": judge,
               f"Gaussian blur {REFERENCE_BLUR:g} px": FixedBlur(REFERENCE_BLUR)}
    modules: dict[str, dict[str, list[torch.Tensor]]] = {role: {} for role in graders}
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, boundary, sigma)
        crop = score_crop(k)
        start = time.perf_counter()
        with torch.no_grad():
            first = METHODS["blind-tv"](y, k, sigma, defaults)
        first_seconds = time.perf_counter() - start
        for name, fn in fns.items():
            start = time.perf_counter()
            with torch.no_grad():
                x_hat = fn(y, k, sigma, first)
            seconds[name] += time.perf_counter() - start + (first_seconds if name not in ("blurred", *extra) else 0)
            for m, v in scores(x_hat, x, y, crop, judge, lpips, align).items():
                per_case[name].setdefault(m, []).append(v)
        with torch.no_grad():  # the frozen deblurrer both modules were trained against (critic.deblurrer)
            deblurred = critic.deblur(y, first).clamp(0, 1)  # as every estimate is scored
            deblurred_sharp = critic.deblur_sharp(x).clamp(0, 1)
        for role, M_R in graders.items():
            for m, v in module_quality(M_R, deblurred, deblurred_sharp, y, x, crop).items():
                modules[role].setdefault(m, []).append(v)
        log(f"  kernel {ki + 1}/{len(bench.kernels)} ({k.shape[-1]} px) done")
    n = len(bench.kernels) * len(bench.images)
    cases = {name: {m: torch.cat(v).tolist() for m, v in d.items()} for name, d in per_case.items()}
    case_ids = [{"kernel": ki, "image": name} for ki in range(len(bench.kernels)) for name in bench.images]
    return {"cases": cases, "case_ids": case_ids, "seconds": {name: s / n for name, s in seconds.items()},
            "modules": {role: summarise_module(v) for role, v in modules.items()}}


def differences(cases: dict[str, dict[str, list[float]]]) -> list[dict]:
    """The paired bootstrap intervals of :data:`COMPARISONS`, with the acceptance of each: sharper by
    blur effect *and* reblur gap (both intervals below 0), at a PSNR cost ≤ :data:`MAX_PSNR_COST`."""
    out = []
    for label, base, treated in COMPARISONS:
        if base not in cases or treated not in cases:
            continue
        spreads = {m: paired_bootstrap(cases[base][m], cases[treated][m]) for m in ("psnr", "blur_effect", "reblur_gap")}
        sharper = all(spreads[m].high < 0 for m in ("blur_effect", "reblur_gap"))
        cost = -spreads["psnr"].mean
        out.append({"comparison": label, "baseline": base, "treatment": treated,
                    **{m: s.as_dict() for m, s in spreads.items()},
                    "sharper": sharper, "psnr_cost": cost, "psnr_cost_target": MAX_PSNR_COST,
                    "met": sharper and cost <= MAX_PSNR_COST})
    return out


def table(cases: dict[str, dict[str, list[float]]], seconds: dict[str, float], names_: tuple[str, ...]) -> list[dict]:
    """The mean of every measure per deblurrer."""
    return [{"name": n, **{m: sum(v) / len(v) for m, v in cases[n].items()}, "seconds_per_image": seconds[n]}
            for n in names_ if n in cases]


#: the tune-split rule for the adaptation's learning rate: the largest whose mean PSNR change is at least this
TTA_MAX_PSNR_DROP = 0.1


def tta_sweep(bench: Benchmark, judge: nn.Module, lrs: list[float], boundary: str, sigma: float, align: int,
              steps: int, parameters: str) -> dict:
    """Test-time adaptation of ``reblur`` with each learning rate on the *tune* split; the largest one
    whose mean PSNR change is ≥ −``TTA_MAX_PSNR_DROP`` dB is chosen: as much sharpening as the data
    allow without a visible loss of fidelity."""
    defaults, pair = load_defaults(), pretrained("reblur-cpu")
    rows, before = [], {}
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, boundary, sigma)
        with torch.no_grad():
            first = METHODS["blind-tv"](y, k, sigma, defaults)
            before[ki] = (y, x, first, scores(pair(y, first=first), x, y, score_crop(k), judge, align=align))
    for lr in sorted(lrs):
        change: dict[str, list[torch.Tensor]] = {}
        for ki, k in enumerate(bench.kernels):
            y, x, first, b = before[ki]
            out = adapt_each(pair, y, first, {"steps": steps, "lr": lr, "parameters": parameters})
            a = scores(out, x, y, score_crop(k), judge, align=align)
            for m in ("psnr", "blur_effect", "reblur_gap"):
                change.setdefault(m, []).append(a[m] - b[m])
        row = {"lr": lr, **{f"mean_{m}_change": float(torch.cat(v).mean()) for m, v in change.items()}}
        print(f"  lr {lr:g}: PSNR {row['mean_psnr_change']:+.3f} dB, blur effect {row['mean_blur_effect_change']:+.4f}, "
              f"reblur gap {row['mean_reblur_gap_change']:+.4f}", flush=True)
        rows.append(row)
    ok = [r["lr"] for r in rows if r["mean_psnr_change"] >= -TTA_MAX_PSNR_DROP]
    if not ok:
        print(f"WARNING: every learning rate costs more than {TTA_MAX_PSNR_DROP} dB; the smallest is chosen", flush=True)
    return {"rows": rows, "chosen_lr": max(ok) if ok else min(lrs), "rule_met": bool(ok),
            "rule": f"largest lr with mean PSNR change >= -{TTA_MAX_PSNR_DROP} dB"}


def markdown(out: dict) -> str:
    """The README's chapter-5 block, from the JSON."""
    has_lpips = any("lpips" in r for r in out["results"])
    head = "| deblurrer | PSNR ↑ | SSIM ↑ | blur effect ↓ | reblur gap ↓ | reblurring PSNR |"
    lines = [head + (" LPIPS ↓ |" if has_lpips else ""), "|---|" + "---:|" * (5 + has_lpips)]
    for r in out["results"]:
        cells = [f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['blur_effect']:.3f}", f"{r['reblur_gap']:.2f}",
                 f"{r['reblur_psnr']:.2f}"] + ([f"{r['lpips']:.3f}"] if has_lpips else [])
        lines.append(f"| `{r['name']}` | " + " | ".join(cells) + " |")
    s, mods = out["setting"], out["modules"]
    lines += ["", f"Set12 {', '.join(s['images'])} × {s['kernels']}, `{s['boundary']}` blur, σ = {s['sigma']:g}: "
              f"{s['cases']} cases, PSNR/SSIM aligned within ±{s['align']} px; commit `{out['environment']['commit'][:10]}`. "
              f"Every row after `blind-tv` corrects blind TV's estimate. Reblur gap (×10³) and reblurring PSNR by the "
              f"independent judge. `L_blur` / identity's: M_R {mods['critic']['ratio']:.2f}, judge "
              f"{mods['judge']['ratio']:.2f}."]
    lines.append("")
    lines.append("| paired difference (95 % bootstrap interval) | PSNR (dB) | blur effect | reblur gap |")
    lines.append("|---|---:|---:|---:|")
    for d in out["differences"]:
        cells = [f"{d[m]['mean']:+.3f} [{d[m]['low']:+.3f}, {d[m]['high']:+.3f}]" for m in ("psnr", "blur_effect", "reblur_gap")]
        lines.append(f"| `{d['treatment']}` − `{d['baseline']}` | " + " | ".join(cells) + " |")
    t = out.get("trend")
    if t:
        lines += ["", f"Clean images are hard to reblur: over {len(t['points'])} deblurrers, Spearman ρ = "
                  f"{t['spearman']:.2f} between deblurring PSNR and the judge's reblurring PSNR."]
    return "\n".join(lines)


def record(out: dict) -> None:
    """Write each module's quality into its shipped metadata (``reblur-module-cpu``, ``reblur-judge``)."""
    setting = {k: out["setting"][k] for k in ("split", "boundary", "sigma", "cases")}
    source = "python -m deblur_edu.experiments.ch5_reblur_eval (benchmarks/reblur.json)"
    for role, name in (("critic", "reblur-module-cpu"), ("judge", "reblur-judge")):
        write_metrics(checkpoint_path(name), {"reblurring": out["modules"][role], "setting": setting, "source": source,
                                              "commit": out["environment"]["commit"]})


def learning_rates(text: str) -> list[float]:
    """An argparse type: comma-separated learning rates, each finite and > 0."""
    return [positive_float(t) for t in names(text)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.ch5_reblur_eval", description=__doc__.split("\n")[0])
    p.add_argument("--split", default="blind", choices=["blind", "tune"],
                   help="blind: the blind benchmark (default); tune: to choose the adaptation's learning rate")
    p.add_argument("--boundary", default="valid", choices=["valid", "circular"])
    p.add_argument("--sigma", type=noise_level, default=0.01)
    p.add_argument("--align", type=int, default=4, choices=range(0, 9), metavar="PIXELS",
                   help="align each estimate to the truth within ±PIXELS before PSNR/SSIM (default 4; 0: off)")
    p.add_argument("--crop", type=positive_int, default=None, help="centre-crop size (default: the split's)")
    p.add_argument("--trend-extra", type=names, default=",".join(TREND_EXTRA),
                   help="comma-separated non-blind benchmark methods added to the trend only")
    p.add_argument("--tta-steps", type=positive_int, default=REBLUR_TTA["steps"])
    p.add_argument("--tta-lr", type=positive_float, default=REBLUR_TTA["lr"])
    p.add_argument("--tta-parameters", default=REBLUR_TTA["parameters"], choices=["all", "decoder", "head"])
    p.add_argument("--tta-sweep", type=learning_rates, default=None,
                   help="comma-separated learning rates: choose the adaptation's lr (use with --split tune)")
    p.add_argument("--lpips", default=None, help="folder with the LPIPS weight files (optional; see deblur_edu.metrics.lpips)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--record", action="store_true", help="write each reblurring module's quality into its shipped metadata")
    p.add_argument("--readme", default=None, help="write the tables into this README's <!-- reblur --> block")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    torch.manual_seed(0)
    with user_errors(p):  # every mistake in the arguments or the data: one line, exit 2, before the run
        for name in args.trend_extra:
            if name not in METHODS or METHODS[name].blind:
                raise ValueError(f"--trend-extra takes non-blind benchmark methods (told the kernel), got {name!r}.")
        if args.tta_sweep and args.split != "tune":
            raise ValueError("choose the adaptation's learning rate on the tune split: add --split tune.")
        if not args.tta_sweep and args.split != "blind":
            raise ValueError("the evaluation runs on the blind split (leave --split out); the tune split is for "
                             "--tta-sweep.")
        if args.readme:
            block_bounds(args.readme, "reblur")
        bench = load_benchmark(args.split, crop=args.crop, data_dir=args.data_dir, fallback=True)
        if args.readme:
            refuse_fallback(bench.data, args.readme)
        lpips = load_lpips(args.lpips) if args.lpips else None
    if bench.note:
        print("NOTE:", bench.note, file=sys.stderr)
    judge = pretrained("reblur-judge").reblurrer
    command = "python -m deblur_edu.experiments.ch5_reblur_eval " + " ".join(argv)
    if args.tta_sweep:
        sweep = tta_sweep(bench, judge, args.tta_sweep, args.boundary, args.sigma, args.align, args.tta_steps,
                          args.tta_parameters)
        print(f"chosen lr: {sweep['chosen_lr']:g} ({sweep['rule']})")
        setting = {"split": bench.split, "boundary": args.boundary, "sigma": args.sigma, "steps": args.tta_steps,
                   "parameters": args.tta_parameters, "align": args.align}
        if args.json:
            write_json(args.json, {"setting": setting, **sweep, "commit": git_commit(), "command": command})
        return 0
    tta = {"steps": args.tta_steps, "lr": args.tta_lr, "parameters": args.tta_parameters}
    sizes = sorted({k.shape[-1] for k in bench.kernels})
    setting = {"split": bench.split, "boundary": args.boundary, "sigma": args.sigma, "crop": bench.crop,
               "align": args.align, "kernels": f"{len(bench.kernels)} camera shakes of {sizes[0]} to {sizes[-1]} px",
               "cases": len(bench.kernels) * len(bench.images), "images": sorted(bench.images), "note": bench.note,
               "tta": tta}
    run = evaluate(bench, judge, pretrained("reblur-module-cpu"), args.boundary, args.sigma, args.align, tta,
                   tuple(args.trend_extra), lpips)
    out: dict = {"setting": setting, "modules": run["modules"],
                 "results": table(run["cases"], run["seconds"], TABLE),
                 "differences": differences(run["cases"]), "per_case": run["cases"], "case_ids": run["case_ids"]}
    for role, m in out["modules"].items():
        print(f"{role}: L_blur {m['l_blur']:.4f} vs identity {m['l_blur_identity']:.4f} (ratio {m['ratio']:.3f}); change "
              f"on deblurred {m['change_deblurred']:.4f}, on sharp {m['change_sharp']:.4f}, on M_D(S) "
              f"{m['change_deblurred_sharp']:.4f}", flush=True)
    for r in out["results"]:
        print(f"  {r['name']:<14}" + "  ".join(f"{m} {r[m]:.4f}" for m in MEASURES if m in r), flush=True)
    for d in out["differences"]:
        print(f"{d['comparison']}: " + ", ".join(f"{m} {d[m]['mean']:+.4f} [{d[m]['low']:+.4f}, {d[m]['high']:+.4f}]"
                                                  for m in ("psnr", "blur_effect", "reblur_gap"))
              + f" → {'met' if d['met'] else 'missed'}", flush=True)
    if out["modules"]["judge"]["reblurs"]:
        points = table(run["cases"], run["seconds"], tuple(n for n in (*TABLE, *args.trend_extra) if n != "blurred"))
        out["trend"] = trend(points)
        print(f"trend: Spearman ρ = {out['trend']['spearman']:.3f} over {len(points)} deblurrers", flush=True)
    else:
        out["trend"] = None
        print(f"trend: not measured — the judge's L_blur is {out['modules']['judge']['ratio']:.2f} × the identity's "
              f"(> {REBLURS_RATIO}): it does not reblur", flush=True)
    out["environment"] = provenance(pick_device("cpu"), split=bench.split, data=bench.data, command=command)
    if args.json:
        write_json(args.json, out)
    if args.record:
        record(out)
    if args.readme:
        replace_block(args.readme, "reblur", markdown(out))
        print(f"updated the reblur block in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
