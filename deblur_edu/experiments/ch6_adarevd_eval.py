"""Chapter 6's measurements of the miniature AdaRevD: quality per sub-decoder, patch exiting.

    python -m deblur_edu.experiments.ch6_adarevd_eval [--checkpoint deblur_edu/zoo/weights/adarevd-cpu]
        [--split blind] [--crop N] [--align 4] [--tile 96] [--overlap 16] [--chunk 32] [--knobs -2 -1 0 1]
        [--repeats 3] [--threads N] [--json OUT] [--readme README.md] [--memory benchmarks/reversible_cost.json]
        [--record]

On chapter 5's blind split (Set12 09–12 × 8 seeded camera shakes of 13 to 31 px that no training sample
uses, ``valid`` blur, σ = 0.01; :func:`deblur_edu.bench.protocol.blind_kernels`). A two-stage model's first
stage (the bench's ``blind-tv``) is computed once per case and handed both to the sub-decoders and to the
*base*: the deblurrer whose encoder is frozen, with its own decoder (``blind-refiner-cpu``).

1. **PSNR/SSIM after each sub-decoder** on whole images, beside the base — does more decoding help?
   Scored as chapter 5 scores its blind methods: each estimate aligned to the truth within ±``align``
   px first (:mod:`deblur_edu.metrics.alignment`). Per case, so that each sub-decoder's difference
   from the base gets a paired 95 % bootstrap interval (:func:`deblur_edu.metrics.paired_bootstrap`).
2. **Patch exiting**: tiled inference with overlap blending, every tile through all N
   sub-decoders (the reference), against :func:`~deblur_edu.learned.patch_exit.adaptive_deblur`
   at each trade-off knob, and with the *true* classes (the oracle a perfect classifier
   would give). For each: PSNR, mean exit point, and wall-clock seconds of the decoder
   (the sub-decoders; the shared tile encoding and the classifier are timed apart),
   the median over ``--repeats`` runs; the saving is ``1 − decoder time / reference's``.
   Also the classifier's accuracy on the test tiles and its confusion matrix.

``--class-thresholds CONFIG`` prints instead where a config's degradation thresholds come from: the
PSNRs of its training crops' blurry images that cut them into equally populated classes (rounded to
whole dB), so that every class has examples to learn from. Peak training memory is measured by
:mod:`deblur_edu.experiments.ch6_reversible_cost`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..bench.methods import METHODS, load_defaults
from ..bench.protocol import Benchmark, load_benchmark, score_crop
from ..bench.report import block_bounds, refuse_fallback, replace_block
from ..bench.run import check_alignment
from ..cli import positive_int, user_errors
from ..learned import AdaRevD
from ..learned.patch_exit import adaptive_deblur, check_tile_sides, degradation_class, exit_after
from ..learned.tiling import check_tiling, gather_tiles, tile_starts
from ..metrics import paired_bootstrap, psnr, ssim
from ..metrics.alignment import align_to
from ..runtime import pick_device, provenance, write_json
from ..train import first_stage_bank, load_config
from ..zoo import WEIGHTS_DIR, metadata, pretrained
from ..zoo.checkpoints import write_metrics

BOUNDARY, SIGMA, ALIGN = "valid", 0.01, 4


@dataclass
class Case:
    """One kernel's images of the benchmark: blurry ``y``, sharp ``x``, the first stage's ``first``
    (None for a one-stage model) and the border of pixels left out when scoring."""

    y: torch.Tensor
    x: torch.Tensor
    first: torch.Tensor | None
    border: int


def load_adarevd(checkpoint: str | Path) -> AdaRevD:
    """A trained :class:`~deblur_edu.learned.AdaRevD` (hash-verified), in eval mode."""
    if metadata(str(checkpoint))["model_name"] != "adarevd":
        raise ValueError(f"{checkpoint} is not an AdaRevD checkpoint.")
    return pretrained(str(checkpoint))


def base_name(checkpoint: str | Path) -> str | None:
    """The checkpoint whose encoder the model froze (its config's ``refiner_from`` or ``encoder``)."""
    model = metadata(str(checkpoint))["config"]["model"]
    return model.get("refiner_from") or model.get("encoder")


@torch.no_grad()
def cases(bench: Benchmark, two_stage: bool) -> list[Case]:
    """Every kernel's batch, with blind TV's estimate of it when the model has two stages."""
    defaults, out = load_defaults(), []
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, BOUNDARY, SIGMA)
        out.append(Case(y, x, METHODS["blind-tv"](y, k, SIGMA, defaults) if two_stage else None, score_crop(k)))
    return out


def score(x_hat: torch.Tensor, case: Case, align: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image PSNR and SSIM of ``x̂`` (clamped to [0, 1]) after aligning it to the truth within
    ±``align`` px, on the interior that leaves ``border + align + 1`` px out (chapter 5's blind scoring)."""
    x_hat = x_hat.clamp(0, 1)
    if align:
        x_hat = align_to(x_hat, case.x, align, case.border)[0].clamp(0, 1)
    border = case.border + (align + 1 if align else 0)
    return psnr(x_hat, case.x, crop=border), ssim(x_hat, case.x, crop=border)


@torch.no_grad()
def per_sub_decoder(model: AdaRevD, base: nn.Module | None, data: list[Case], align: int) -> dict:
    """Per case and mean PSNR/SSIM after each sub-decoder, the base's and the blurry input's (and the
    first stage's), and each sub-decoder's paired interval against the base."""
    n = len(model.decoder.columns)
    per_case: dict[str, list[torch.Tensor]] = {}

    def add(name: str, x_hat: torch.Tensor, case: Case) -> None:
        p, s = score(x_hat, case, align)
        per_case.setdefault(f"{name}_psnr", []).append(p)
        per_case.setdefault(f"{name}_ssim", []).append(s)

    for case in data:
        for i, x_hat in enumerate(model.estimates(case.y, first=case.first), start=1):
            add(str(i), x_hat, case)
        if base is not None:
            add("base", base(case.y, first=case.first) if model.two_stage else base(case.y), case)
        add("blurred", case.y, case)
        if case.first is not None:
            add("first", case.first, case)
    cols = {name: torch.cat(v).tolist() for name, v in per_case.items()}
    mean = lambda name: statistics.fmean(cols[name])
    out = {"psnr": [mean(f"{i}_psnr") for i in range(1, n + 1)], "ssim": [mean(f"{i}_ssim") for i in range(1, n + 1)],
           "blurred_psnr": mean("blurred_psnr"), "cases": cols}
    if "first_psnr" in cols:
        out["first_psnr"] = mean("first_psnr")
    if base is not None:
        out["base"] = {"psnr": mean("base_psnr"), "ssim": mean("base_ssim")}
        out["versus_base"] = [paired_bootstrap(torch.tensor(cols["base_psnr"]), torch.tensor(cols[f"{i}_psnr"])).as_dict()
                              for i in range(1, n + 1)]
    return out


def tile_grid(y: torch.Tensor, tile: int, overlap: int) -> tuple[int, int]:
    """How many tile rows and columns cover ``y``."""
    return len(tile_starts(y.shape[-2], tile, overlap)), len(tile_starts(y.shape[-1], tile, overlap))


def tiles_of(t: torch.Tensor | None, tile: int, overlap: int) -> torch.Tensor | None:
    """``t`` cut into overlapping tiles, as one batch (None stays None: a one-stage model has no first stage)."""
    return None if t is None else gather_tiles(t, tile, overlap)[0]


def tile_classes(model: AdaRevD, case: Case, tile: int, overlap: int) -> torch.Tensor:
    """Each tile's true degradation class (from its blurry and sharp versions)."""
    return degradation_class(tiles_of(case.y, tile, overlap), tiles_of(case.x, tile, overlap), model.thresholds)


def true_exits(model: AdaRevD, case: Case, tile: int, overlap: int, knob: int = 0) -> torch.Tensor:
    """The exit points a perfect classifier would give: from each tile's true degradation class."""
    classes = tile_classes(model, case, tile, overlap)
    exits = exit_after(classes, len(model.decoder.columns), model.classifier.fc.out_features, knob)
    return exits.reshape(case.y.shape[0], *tile_grid(case.y, tile, overlap))


@torch.no_grad()
def classifier_confusion(model: AdaRevD, data: list[Case], tile: int, overlap: int) -> dict:
    """The classifier on every test tile: accuracy, the confusion matrix (rows: true class, columns:
    predicted) and how often the most common class occurs (what always guessing it would score)."""
    classes = model.classifier.fc.out_features
    matrix = torch.zeros(classes, classes, dtype=torch.long)
    for case in data:
        truth = tile_classes(model, case, tile, overlap)
        predicted = model.classify(tiles_of(case.y, tile, overlap), tiles_of(case.first, tile, overlap))
        matrix += torch.bincount(truth * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    total = int(matrix.sum())
    return {"accuracy": int(matrix.diag().sum()) / total, "confusion": matrix.tolist(),
            "majority": int(matrix.sum(1).max()) / total, "tiles": total, "thresholds": list(model.thresholds)}


def run_setting(model: AdaRevD, data: list[Case], tile: int, overlap: int, setting: dict, align: int,
                chunk: int = 32) -> dict:
    """One pass over the benchmark with tiled inference in one setting (all / knob / oracle)."""
    n = len(model.decoder.columns)
    scores, exits_all, decode, encode = [], [], 0.0, 0.0
    for case in data:
        if setting["kind"] == "all":
            exits = torch.full((case.y.shape[0], *tile_grid(case.y, tile, overlap)), n)
        elif setting["kind"] == "oracle":
            exits = true_exits(model, case, tile, overlap)
        else:
            exits = None
        timings: dict[str, float] = {}
        out, used = adaptive_deblur(model.decoder, model.classifier, model.inputs(case.y, case.first), tile, overlap,
                                    setting.get("knob", 0), exits=exits, timings=timings, chunk=chunk)
        decode += timings["decode"]
        encode += timings["encode"]
        scores.append(score(out, case, align)[0])
        exits_all.append(used.flatten())
    return {**setting, "psnr": float(torch.cat(scores).mean()), "mean_exit": float(torch.cat(exits_all).float().mean()),
            "decode_seconds": decode, "encode_seconds": encode}


@torch.no_grad()
def exiting_curve(model: AdaRevD, data: list[Case], tile: int, overlap: int, knobs: list[int],
                  repeats: int = 3, chunk: int = 32, align: int = ALIGN) -> list[dict]:
    """The reference (every tile through all sub-decoders), each knob and the oracle: PSNR,
    mean exit, decoder seconds (median over ``repeats`` interleaved runs), and the saving."""
    settings = [{"kind": "all"}] + [{"kind": "knob", "knob": q} for q in knobs] + [{"kind": "oracle", "knob": 0}]
    # PSNR does not change between repeats: the first run scores, the others only time
    runs = [[run_setting(model, data, tile, overlap, s, align if r == 0 else 0, chunk) for s in settings]
            for r in range(repeats)]
    rows = []
    for i, setting in enumerate(settings):
        row = dict(runs[0][i])
        for key in ("decode_seconds", "encode_seconds"):
            row[key] = statistics.median(r[i][key] for r in runs)
        rows.append(row)
    reference = rows[0]
    for row in rows:
        row["saving"] = 1 - row["decode_seconds"] / reference["decode_seconds"]
        row["psnr_change"] = row["psnr"] - reference["psnr"]
    return rows


def label(row: dict) -> str:
    """How a row of the exiting curve is named in tables."""
    if row["kind"] == "all":
        return "all sub-decoders"
    return "true classes" if row["kind"] == "oracle" else f"classifier, knob {row['knob']:+d}"


def class_names(thresholds: list[float]) -> list[str]:
    """The degradation classes as PSNR ranges of the blurry tile, class 0 (nearly clean) first."""
    t = sorted(thresholds, reverse=True)
    names = [f"≥ {t[0]:g} dB"] + [f"{lo:g}–{hi:g} dB" for hi, lo in zip(t, t[1:])] + [f"< {t[-1]:g} dB"]
    return names


def markdown(out: dict, memory: dict | None = None) -> str:
    """The README's chapter-6 tables (with :mod:`~deblur_edu.experiments.ch6_reversible_cost`'s JSON: memory too)."""
    q, s = out["sub_decoders"], out["setting"]
    n = len(q["psnr"])
    has_base = "base" in q
    head = "| | " + " | ".join(f"after sub-decoder {i}" for i in range(1, n + 1))
    lines = [head + (f" | base (`{s['base']}`) |" if has_base else " |"), "|---" * (n + 1 + has_base) + "|",
             "| PSNR (dB) | " + " | ".join(f"{p:.2f}" for p in q["psnr"])
             + (f" | {q['base']['psnr']:.2f} |" if has_base else " |")]
    if has_base:
        lines.append("| − base, 95 % interval | " + " | ".join(
            f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]" for d in q["versus_base"]) + " | |")
    lines += ["", "| tiled inference | PSNR (dB) | Δ PSNR | mean exit | decoder time saved |", "|---|---|---|---|---|"]
    for row in out["exiting"]:
        lines.append(f"| {label(row)} | {row['psnr']:.2f} | {row['psnr_change']:+.3f} | {row['mean_exit']:.2f} | "
                     f"{100 * row['saving']:.0f} % |")
    c = out["classifier"]
    names = class_names(c["thresholds"])
    lines += ["", "| true class \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(v) for v in row) + " |" for name, row in zip(names, c["confusion"])]
    first = f" after the first stage (blind TV, {q['first_psnr']:.2f} dB)" if "first_psnr" in q else ""
    lines += ["", f"Set12 {', '.join(s['images'])} × {s['kernels']} camera shakes of {s['kernel_sizes']} px (split "
                  f"`{s['split']}`), `{s['boundary']}` blur, σ = {s['sigma']:g}: {s['cases']} cases (blurry input "
                  f"{q['blurred_psnr']:.2f} dB){first}; PSNR after aligning each estimate within ±{s['align']} px. "
                  f"Intervals: paired bootstrap over the cases. Tiles of {s['tile']} px overlapping by {s['overlap']}, "
                  f"decoded {s['chunk']} at a time; decoder time is the median of {s['repeats']} runs on "
                  f"{s['threads']} CPU thread(s). Classifier on the {c['tiles']} test tiles (class: the blurry tile's "
                  f"PSNR): accuracy {c['accuracy']:.2f}, always guessing the commonest class {c['majority']:.2f}; "
                  f"commit `{out['environment']['commit'][:10]}`."]
    if memory is not None:
        m = memory["settings"]
        ratios = ", ".join(f"{r['columns']}: {r['ratio']:.2f}" for r in memory["rows"])
        lines.append(f"Peak training memory reversible / plain (allocator peak of one step, batch {m['batch']} × "
                     f"{m['size']}², {m['device']}), by number of sub-decoders — {ratios}.")
    return "\n".join(lines)


def record(out: dict, checkpoint: Path) -> None:
    """Write the per-sub-decoder PSNR, the classifier and the exiting curve into the checkpoint's metadata."""
    sub = {k: v for k, v in out["sub_decoders"].items() if k != "cases"}
    write_metrics(checkpoint, {"sub_decoders": sub, "classifier": out["classifier"], "exiting": out["exiting"],
                               "setting": out["setting"],
                               "source": "python -m deblur_edu.experiments.ch6_adarevd_eval (benchmarks/adarevd.json)",
                               "commit": out["environment"]["commit"]})


def class_thresholds(data: dict, classes: int = 3, batches: int = 40, size: int = 32) -> dict:
    """The blurry-image PSNRs that cut the training crops of a bank config (``data``, a ``task: refine``
    section) into ``classes`` equally populated classes, rounded to whole dB: ``batches`` × ``size`` crops
    drawn as training draws them."""
    bank = first_stage_bank(data, torch.device("cpu"))
    values = torch.cat([psnr(b["blurred"].clamp(0, 1), b["sharp"]) for b in (bank.batch(step, size)
                                                                            for step in range(batches))])
    cuts = torch.quantile(values, torch.arange(1, classes) / classes)
    return {"quantiles": cuts.tolist(), "thresholds": sorted(float(round(float(c))) for c in cuts),
            "crops": len(values), "patch": bank.patch, "classes": classes}


def size_range(kernels: list[torch.Tensor]) -> str:
    """``"13 to 31"`` (or ``"25"`` when every kernel has one size)."""
    sizes = sorted({k.shape[-1] for k in kernels})
    return f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.ch6_adarevd_eval", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=str(WEIGHTS_DIR / "adarevd-cpu"))
    p.add_argument("--split", default="blind", choices=["blind", "tune"])
    p.add_argument("--crop", type=positive_int, default=None, help="image crop (default: the benchmark's)")
    p.add_argument("--align", type=int, default=ALIGN, help="largest shift searched when aligning (px; 0: none)")
    p.add_argument("--tile", type=positive_int, default=96)
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--knobs", type=int, nargs="+", default=[-2, -1, 0, 1])
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--chunk", type=positive_int, default=32, help="tiles decoded per call (the same in every setting)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (timings: fix it)")
    p.add_argument("--json", default=None)
    p.add_argument("--readme", default=None, help="replace the <!-- adarevd --> block of this file")
    p.add_argument("--record", action="store_true", help="write the metrics into the checkpoint's metadata")
    p.add_argument("--memory", default=None, help="reversible_cost's JSON, for the README's memory line")
    p.add_argument("--class-thresholds", metavar="CONFIG", default=None,
                   help="print the degradation thresholds of an adarevd preset's (or YAML file's) training crops, and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    checkpoint = Path(args.checkpoint).with_suffix(".pt")
    if args.class_thresholds:
        with user_errors(p):
            found = class_thresholds(load_config("adarevd", args.class_thresholds)["data"])
        print(f"{found['crops']} training crops of {found['patch']}² (drawn as training draws them): "
              f"{found['classes']} equally populated classes cut at "
              + ", ".join(f"{q:.2f}" for q in found["quantiles"]) + " dB → thresholds: "
              + ", ".join(f"{t:g}" for t in found["thresholds"]))
        return 0
    with user_errors(p):  # every mistake in the arguments or the data: one line, exit 2, before the run
        check_tiling(args.tile, args.overlap)
        if args.align < 0:
            raise ValueError(f"--align must be >= 0 px, got {args.align}.")
        if args.readme:
            block_bounds(args.readme, "adarevd")
        memory = json.loads(Path(args.memory).read_text()) if args.memory else None
        model = load_adarevd(checkpoint)
        base = base_name(checkpoint)
        base_model = pretrained(base) if base else None
        bench = load_benchmark(args.split, crop=args.crop)
        if args.readme:
            refuse_fallback(bench.data, args.readme)
        check_alignment(bench, args.align)
        check_tile_sides((args.tile,), model.decoder.encoder.levels)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    data = cases(bench, model.two_stage)
    out = {"setting": {"split": args.split, "images": list(bench.images), "boundary": BOUNDARY, "sigma": SIGMA,
                       "align": args.align, "tile": args.tile, "overlap": args.overlap, "chunk": args.chunk,
                       "repeats": args.repeats, "threads": torch.get_num_threads(),
                       "cases": len(bench.images) * len(bench.kernels), "kernels": len(bench.kernels),
                       "kernel_sizes": size_range(bench.kernels),
                       "crop": bench.crop, "checkpoint": str(checkpoint), "base": base},
           "sub_decoders": per_sub_decoder(model, base_model, data, args.align),
           "classifier": classifier_confusion(model, data, args.tile, args.overlap),
           "exiting": exiting_curve(model, data, args.tile, args.overlap, args.knobs, args.repeats, args.chunk,
                                    args.align)}
    out["case_ids"] = [{"kernel": ki, "image": name} for ki in range(len(bench.kernels)) for name in bench.images]
    out["environment"] = {**provenance(pick_device("cpu"), split=bench.split, data=bench.data,
                                       command="python -m deblur_edu.experiments.ch6_adarevd_eval " + " ".join(argv)),
                          "seconds": time.time() - start}
    table = markdown(out, memory)
    print(table)
    if args.json:
        write_json(args.json, out)
    if args.readme:
        replace_block(args.readme, "adarevd", table)
    if args.record:
        record(out, checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
