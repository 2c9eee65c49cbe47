r"""Chapter 5's evaluation: are reblurring-trained images sharper, and what does it cost in PSNR?

    python -m deblur_edu.experiments.ch5_reblur_eval [--json OUT] [--snapshots RUN_DIR] [--readme README.md]
        [--tta-steps 5] [--tta-lr 1e-4] [--tta-parameters all|decoder|head] [--lpips DIR]
        [--split test|tune] [--kernels shakes|levin] [--boundary valid] [--sigma 0.01]

Every deblurrer runs on the split's Set12 images with chapter 5's kernels (camera shakes of
the training size from unseen seeds; ``--kernels levin`` for Levin's), the benchmark's
protocol (:mod:`deblur_edu.bench.protocol`), and each output ``x̂`` gets, on the scored interior:

- **PSNR / SSIM** against the sharp image (distortion);
- **blur effect** (:func:`deblur_edu.metrics.sharpness.blur_effect`, Crété-Roffet et al. 2007):
  no reference, no training, lower = sharper;
- two measures of an *independent judge* ``J``: a reblurring module trained with another
  seed, on other data, beside its own L1 deblurrer (shipped as ``reblur-judge``). The
  chapter's own ``M_R`` never grades, or the loss would grade itself.
  **Reblur gap** ``‖J(x̂) − x̂‖₁`` (mean, ×10³): how much blur ``J`` finds to amplify, the
  self-supervised loss measured by another network; lower = cleaner.
  **Reblurring PSNR** ``PSNR(J(x̂), y)``: how well ``J`` rebuilds the blurry input from ``x̂``
  (Nah et al.'s measure); the better the deblurring, the harder to reblur, the lower it is;
- **LPIPS** (:mod:`deblur_edu.metrics.lpips`) when its weights are present (``--lpips DIR``).

It writes three findings into one JSON: the table of deblurrers; the trend "clean images
are hard to reblur" (reblurring PSNR against deblurring PSNR over Wiener, TV, RGDN and the
U-Net at several training stages, with Spearman's rank correlation); and test-time
adaptation (per image, before/after, guarded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import yaml
from torch import nn

from ..bench.methods import METHODS, REBLUR_TTA, load_defaults
from ..bench.protocol import SHAKE_SIZE, Benchmark, chapter_benchmark, interior, score_crop
from ..bench.report import block_bounds, refuse_fallback, replace_block
from ..cli import names, noise_level, positive_float, positive_int, user_errors
from ..learned import ReblurDeblurrer, adapt_at_test_time
from ..metrics import blur_effect, psnr, ssim
from ..metrics.lpips import load_lpips
from ..runtime import git_commit, pick_device, provenance, write_json
from ..zoo import pretrained
from ..zoo.shipped import checkpoint_path
from ..zoo.checkpoints import write_metrics

#: the measures, and whether higher is better (reblurring PSNR: neither, it is the trend's axis)
MEASURES = {"psnr": True, "ssim": True, "blur_effect": False, "reblur_gap": False, "reblur_psnr": None,
            "lpips": False}
#: the deblurrers of the table (benchmark method names), in order
TABLE = ("wiener-taper", "tv", "rgdn", "reblur-l1", "reblur-l1-ft", "reblur")

Deblur = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


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
           lpips: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Every measure of the module docstring, per image, on the interior ``crop`` pixels in."""
    x_hat = x_hat.clamp(0, 1)
    out = {"psnr": psnr(x_hat, x, crop=crop), "ssim": ssim(x_hat, x, crop=crop),
           "blur_effect": blur_effect(interior(x_hat, crop)), "reblur_gap": reblur_gap(judge, x_hat, crop),
           "reblur_psnr": reblurring_psnr(judge, x_hat, y, crop)}
    if lpips is not None:
        with torch.no_grad():
            out["lpips"] = lpips(interior(x_hat, crop), interior(x, crop))
    return out


def evaluate(bench: Benchmark, deblur: Deblur, judge: nn.Module, boundary: str = "valid",
             sigma: float = 0.01, lpips: nn.Module | None = None) -> dict[str, float]:
    """Mean of :func:`scores` over every (image, kernel) case, and seconds per image."""
    per_case: dict[str, list[torch.Tensor]] = {}
    seconds = 0.0
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, boundary, sigma)
        start = time.perf_counter()
        with torch.no_grad():
            x_hat = deblur(y, k, sigma)
        seconds += time.perf_counter() - start
        for name, value in scores(x_hat, x, y, score_crop(k), judge, lpips).items():
            per_case.setdefault(name, []).append(value)
    means = {name: float(torch.cat(v).mean()) for name, v in per_case.items()}
    return {**means, "seconds_per_image": seconds / (len(bench.kernels) * len(bench.images))}


def judge_quality(bench: Benchmark, judge: nn.Module, boundary: str, sigma: float) -> dict[str, float]:
    """The judge's reblur gap on the sharp images and on the blurry ones: a judge that measures
    blur finds little to amplify in the first (clean images are hard to reblur)."""
    sharp, blurry = [], []
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, boundary, sigma)
        sharp.append(reblur_gap(judge, x, score_crop(k)))
        blurry.append(reblur_gap(judge, y, score_crop(k)))
    return {"reblur_gap_sharp": float(torch.cat(sharp).mean()), "reblur_gap_blurred": float(torch.cat(blurry).mean())}


def record_judge(out: dict) -> None:
    """Write the judge's quality and where it was measured into ``reblur-judge.json``."""
    write_metrics(checkpoint_path("reblur-judge"),
                  {"judge": out["judge"], "setting": {k: out["setting"][k] for k in ("split", "boundary", "sigma", "cases")},
                   "source": "python -m deblur_edu.experiments.ch5_reblur_eval (benchmarks/reblur.json)",
                   "commit": out["environment"]["commit"]})


def method(name: str) -> Deblur:
    """A benchmark method (tuned weights for the classical ones) as ``f(y, k, σ)``."""
    defaults = load_defaults()
    return lambda y, k, sigma: METHODS[name](y, k, sigma, defaults)


def snapshots(run_dir: str | Path) -> dict[str, Deblur]:
    """The deblurrer of a training run at each saved stage (``RUN/snapshots/step-N.pt``)."""
    run_dir = Path(run_dir)
    files = sorted((run_dir / "snapshots").glob("step-*.pt"))
    if not files:
        raise FileNotFoundError(f"no snapshots in {run_dir}/snapshots: train with train.snapshot_every set "
                                f"(configs/reblur-cpu-l1.yaml does), or leave --snapshots out.")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
    stages = {}
    for f in files:
        model = ReblurDeblurrer(**cfg)
        model.load_state_dict(torch.load(f, map_location="cpu", weights_only=True))
        stages[f"l1 step {int(f.stem.split('-')[1])}"] = _blind(model.eval())
    return stages


def _blind(model: nn.Module) -> Deblur:
    return lambda y, k, sigma: model(y)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (no ties expected): +1 for a perfectly monotone trend."""
    ra = torch.tensor(a).argsort().argsort().double()
    rb = torch.tensor(b).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def trend(points: list[dict]) -> dict:
    """The deblurrers' scores (rows of :func:`evaluate`, with a ``name``) and the rank correlation
    of their deblurring PSNR and reblurring PSNR."""
    rho = spearman([p["psnr"] for p in points], [p["reblur_psnr"] for p in points])
    return {"points": points, "spearman": rho}


def adaptation(bench: Benchmark, model: ReblurDeblurrer, judge: nn.Module, boundary: str, sigma: float,
               steps: int, lr: float, parameters: str) -> dict:
    """Test-time adaptation of ``model.deblurrer`` with its own ``M_R``, image by image;
    graded with the judge and the blur effect (instruments the adaptation never saw)."""
    cases = []
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, boundary, sigma)
        crop = score_crop(k)
        for i, name in enumerate(bench.images):
            yi, xi = y[i : i + 1], x[i : i + 1]
            with torch.no_grad():
                before = scores(model.deblurrer(yi), xi, yi, crop, judge)
            adapted, info = adapt_at_test_time(model.deblurrer, model.reblurrer, yi, steps, lr, parameters)
            after = scores(adapted, xi, yi, crop, judge)
            cases.append({"image": name, "kernel": ki, "kept_step": info.kept_step, "stopped": info.stopped,
                          "own_loss": [info.losses[0], info.losses[info.kept_step]],  # before, kept
                          **{f"{m}_before": float(before[m]) for m in before},
                          **{f"{m}_after": float(after[m]) for m in after}})
    n = len(cases)
    delta = {m: sum(c[f"{m}_after"] - c[f"{m}_before"] for c in cases) / n for m in ("psnr", "ssim", "blur_effect", "reblur_gap")}
    return {
        "settings": {"steps": steps, "lr": lr, "parameters": parameters},
        "cases": n,
        "mean_change": delta,
        "sharper_fraction": sum(c["blur_effect_after"] < c["blur_effect_before"] for c in cases) / n,
        "guard_stops": sum(c["stopped"] != "steps done" for c in cases),
        "mean_kept_step": sum(c["kept_step"] for c in cases) / n,
        "per_case": cases,
    }


#: the tune-split rule for the adaptation's learning rate: the largest whose mean PSNR change is at least this
TTA_MAX_PSNR_DROP = 0.1


def choose_tta_lr(bench: Benchmark, model: ReblurDeblurrer, judge: nn.Module, lrs: list[float], boundary: str,
                  sigma: float, steps: int, parameters: str) -> dict:
    """Run the adaptation with each learning rate (on the *tune* split) and pick the largest one
    whose mean PSNR change is ≥ −``TTA_MAX_PSNR_DROP`` dB: as much sharpening as the data allow
    without a visible loss of fidelity."""
    rows = []
    for lr in sorted(lrs):
        t = adaptation(bench, model, judge, boundary, sigma, steps, lr, parameters)
        rows.append({"lr": lr, **{f"mean_{m}_change": v for m, v in t["mean_change"].items()},
                     "sharper_fraction": t["sharper_fraction"], "guard_stops": t["guard_stops"]})
    ok = [r["lr"] for r in rows if r["mean_psnr_change"] >= -TTA_MAX_PSNR_DROP]
    return {"rows": rows, "chosen_lr": max(ok) if ok else min(lrs), "rule": f"largest lr with mean PSNR change >= -{TTA_MAX_PSNR_DROP} dB"}


def markdown(out: dict) -> str:
    """The README's chapter-5 block, from the JSON."""
    has_lpips = any("lpips" in r for r in out["results"])
    head = "| deblurrer | PSNR ↑ | SSIM ↑ | blur effect ↓ | reblur gap ↓ | reblurring PSNR |"
    lines = [head + (" LPIPS ↓ |" if has_lpips else ""), "|---|" + "---:|" * (5 + has_lpips)]
    for r in out["results"]:
        cells = [f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['blur_effect']:.3f}", f"{r['reblur_gap']:.4f}",
                 f"{r['reblur_psnr']:.2f}"] + ([f"{r['lpips']:.3f}"] if has_lpips else [])
        lines.append(f"| `{r['name']}` | " + " | ".join(cells) + " |")
    s, t, j = out["setting"], out["tta"], out["judge"]
    d = t["mean_change"]
    lines += ["", f"Set12 {', '.join(s['images'])} ({s['crop']}² crops) × {s['kernels']}, `{s['boundary']}` blur, "
              f"σ = {s['sigma']:g}: {s['cases']} cases; commit `{out['environment']['commit'][:10]}`. "
              f"Reblur gap and reblurring PSNR by the independent judge, whose reblur gap is {j['reblur_gap_sharp']:.4f} "
              f"on the sharp images and {j['reblur_gap_blurred']:.4f} on the blurry ones. "
              f"Test-time adaptation of `reblur` ({t['settings']['steps']} steps, lr {t['settings']['lr']:g}, "
              f"{t['settings']['parameters']} weights), mean change per image: PSNR {d['psnr']:+.3f} dB, blur effect "
              f"{d['blur_effect']:+.4f}, reblur gap {d['reblur_gap']:+.4f}; sharper on {100 * t['sharper_fraction']:.0f}% "
              f"of the images; the guard stopped {t['guard_stops']} of {t['cases']}. Trend over "
              f"{len(out['trend']['points'])} deblurrers: Spearman ρ = {out['trend']['spearman']:.2f} between "
              f"deblurring PSNR and reblurring PSNR."]
    return "\n".join(lines)


def learning_rates(text: str) -> list[float]:
    """An argparse type: comma-separated learning rates, each finite and > 0."""
    return [positive_float(t) for t in names(text)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.ch5_reblur_eval", description=__doc__.split("\n")[0])
    p.add_argument("--split", default="test", choices=["test", "tune"])
    p.add_argument("--boundary", default="valid", choices=["valid", "circular"])
    p.add_argument("--sigma", type=noise_level, default=0.01)
    p.add_argument("--kernels", default="shakes", choices=["shakes", "levin"],
                   help=f"shakes: 8 camera shakes of {SHAKE_SIZE} px, the training size, unseen seeds (default); "
                        f"levin: Levin et al.'s 8 kernels (13–27 px, larger than the training blur)")
    p.add_argument("--crop", type=positive_int, default=None, help="centre-crop size (default: the split's)")
    p.add_argument("--table", type=names, default=",".join(TABLE), help="comma-separated benchmark methods to compare")
    p.add_argument("--snapshots", default=None, help="a training run folder with snapshots/ (the trend's stages)")
    p.add_argument("--tta-steps", type=positive_int, default=REBLUR_TTA["steps"])
    p.add_argument("--tta-lr", type=positive_float, default=REBLUR_TTA["lr"])
    p.add_argument("--tta-parameters", default=REBLUR_TTA["parameters"], choices=["all", "decoder", "head"])
    p.add_argument("--tta-only", action="store_true", help="only the test-time adaptation")
    p.add_argument("--tta-sweep", type=learning_rates, default=None,
                   help="comma-separated learning rates: choose the adaptation's lr (use with --split tune)")
    p.add_argument("--lpips", default=None, help="folder with the LPIPS weight files (optional; see deblur_edu.metrics.lpips)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--record", action="store_true", help="write the judge's quality into its shipped metadata")
    p.add_argument("--readme", default=None, help="write the table into this README's <!-- reblur --> block")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = parser().parse_args(argv)
    args.argv = argv
    return args


def run_sweep(args: argparse.Namespace, bench: Benchmark, model: ReblurDeblurrer, judge: nn.Module) -> dict:
    """``--tta-sweep``: choose the adaptation's learning rate on the tune split."""
    if bench.split != "tune":
        raise ValueError("choose the adaptation's learning rate on the tune split: add --split tune.")
    lrs = args.tta_sweep
    sweep = choose_tta_lr(bench, model, judge, lrs, args.boundary, args.sigma, args.tta_steps, args.tta_parameters)
    for row in sweep["rows"]:
        print(f"  lr {row['lr']:g}: PSNR {row['mean_psnr_change']:+.3f} dB, blur effect "
              f"{row['mean_blur_effect_change']:+.4f}, sharper on {row['sharper_fraction']:.0%}")
    print(f"chosen lr: {sweep['chosen_lr']:g} ({sweep['rule']})")
    setting = {"split": bench.split, "boundary": args.boundary, "sigma": args.sigma, "steps": args.tta_steps,
               "parameters": args.tta_parameters}
    return {"setting": setting, **sweep, "commit": git_commit()}


def compare(args: argparse.Namespace, bench: Benchmark, table: list[str], judge: nn.Module,
            lpips: nn.Module | None, stages: dict[str, Deblur] | None = None) -> dict:
    """The table of deblurrers, the trend and the acceptance figures (``stages``: the
    :func:`snapshots` of ``args.snapshots``, when the caller has loaded them)."""
    results = []
    for name in ("blurred", *table):
        fn = (lambda y, k, s: y) if name == "blurred" else method(name)
        results.append({"name": name, **evaluate(bench, fn, judge, args.boundary, args.sigma, lpips)})
        print(f"  {name:<14}" + "  ".join(f"{m} {results[-1][m]:.4f}" for m in MEASURES if m in results[-1]), flush=True)
    if stages is None:
        stages = snapshots(args.snapshots) if args.snapshots else {}
    points = [r for r in results if r["name"] != "blurred"]  # the blurry input is not a deblurrer
    points += [{"name": name, **evaluate(bench, fn, judge, args.boundary, args.sigma)} for name, fn in stages.items()]
    out = {"results": results, "trend": trend(points)}
    print(f"trend: Spearman ρ = {out['trend']['spearman']:.3f} over {len(points)} deblurrers", flush=True)
    by_name = {r["name"]: r for r in results}
    if {"reblur-l1-ft", "reblur"} <= by_name.keys():  # the same fine-tuning, with and without the reblurring loss
        l1, rb = by_name["reblur-l1-ft"], by_name["reblur"]
        out["acceptance"] = {"psnr_drop": l1["psnr"] - rb["psnr"], "psnr_drop_target": 0.3,
                             "sharper_blur_effect": rb["blur_effect"] < l1["blur_effect"],
                             "smaller_reblur_gap": rb["reblur_gap"] < l1["reblur_gap"]}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    args.argv = argv
    torch.manual_seed(0)
    table = args.table
    with user_errors(p):  # every mistake in the arguments or the data: one line, exit 2, before the run
        for name in table:
            if name not in METHODS:
                raise ValueError(f"unknown method {name!r} in --table; choose from {', '.join(METHODS)}.")
        if args.tta_sweep and args.split != "tune":
            raise ValueError("choose the adaptation's learning rate on the tune split: add --split tune.")
        if args.readme and not args.tta_only:
            block_bounds(args.readme, "reblur")
        bench = chapter_benchmark(args.split, args.kernels, args.crop, args.data_dir)
        if args.readme and not args.tta_only:
            refuse_fallback(bench.data, args.readme)
        lpips = None
        if args.lpips:
            lpips = load_lpips(args.lpips)
        stages = snapshots(args.snapshots) if args.snapshots and not args.tta_only and not args.tta_sweep else None
    if bench.note:
        print("NOTE:", bench.note, file=sys.stderr)
    judge = pretrained("reblur-judge").reblurrer
    model = pretrained("reblur-cpu")
    if args.tta_sweep:
        sweep = run_sweep(args, bench, model, judge)
        if args.json:
            write_json(args.json, sweep)
        return 0
    setting = {"split": bench.split, "boundary": args.boundary, "sigma": args.sigma, "crop": bench.crop,
               "kernels": f"8 camera shakes of {SHAKE_SIZE} px" if args.kernels == "shakes" else "Levin's 8 kernels",
               "cases": len(bench.kernels) * len(bench.images), "images": sorted(bench.images), "note": bench.note}
    out: dict = {"setting": setting, "judge": judge_quality(bench, judge, args.boundary, args.sigma)}
    print(f"judge: reblur gap {out['judge']['reblur_gap_sharp']:.3f} on sharp, "
          f"{out['judge']['reblur_gap_blurred']:.3f} on blurry images", flush=True)
    if not args.tta_only:
        out.update(compare(args, bench, table, judge, lpips, stages))
    out["tta"] = t = adaptation(bench, model, judge, args.boundary, args.sigma, args.tta_steps, args.tta_lr,
                                args.tta_parameters)
    print(f"TTA: mean change {t['mean_change']}; sharper on {t['sharper_fraction']:.0%}; "
          f"guard stops {t['guard_stops']}/{t['cases']}", flush=True)
    out["environment"] = provenance(pick_device("cpu"), split=bench.split, data=bench.data,
                                    command="python -m deblur_edu.experiments.ch5_reblur_eval " + " ".join(args.argv))
    if args.json:
        write_json(args.json, out)
    if args.record:
        record_judge(out)
    if args.readme and not args.tta_only:
        replace_block(args.readme, "reblur", markdown(out))
        print(f"updated the reblur block in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
