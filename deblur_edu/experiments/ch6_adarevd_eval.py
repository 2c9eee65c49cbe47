"""Chapter 6's measurements of the miniature AdaRevD: quality per sub-decoder, patch exiting.

    python -m deblur_edu.experiments.ch6_adarevd_eval [--checkpoint deblur_edu/zoo/weights/adarevd-cpu]
        [--split test] [--crop N] [--tile 64] [--overlap 16] [--chunk 32] [--knobs -2 -1 0 1] [--repeats 3]
        [--json OUT] [--readme README.md] [--memory benchmarks/reversible_cost.json] [--record]

On the encoder's own kind of blur (Set12's test images × 8 camera shakes of 13 px that no training
sample uses, ``valid`` blur, σ = 0.01; :func:`deblur_edu.bench.protocol.chapter_benchmark`):

1. **PSNR/SSIM after each sub-decoder** on whole images, beside the end-to-end U-Net whose
   encoder is frozen (its own decoder) — does more decoding help?
2. **Patch exiting**: tiled inference with overlap blending, every tile through all N
   sub-decoders (the reference), against :func:`~deblur_edu.learned.patch_exit.adaptive_deblur`
   at each trade-off knob, and with the *true* classes (the oracle a perfect classifier
   would give). For each: PSNR, mean exit point, and wall-clock seconds of the decoder
   (the sub-decoders; the shared tile encoding and the classifier are timed apart),
   the median over ``--repeats`` runs; the saving is ``1 − decoder time / reference's``.
   Also the classifier's accuracy on the test tiles.

Peak training memory is measured by :mod:`deblur_edu.experiments.ch6_reversible_cost`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from ..bench.protocol import SHAKE_SIZE, Benchmark, chapter_benchmark, score_crop
from ..bench.report import block_bounds, refuse_fallback, replace_block
from ..cli import positive_int, user_errors
from ..learned import AdaRevD
from ..learned.patch_exit import adaptive_deblur, degradation_class, exit_after
from ..learned.tiling import check_tiling, gather_tiles, tile_starts
from ..metrics import psnr, ssim
from ..runtime import pick_device, provenance, write_json
from ..zoo import WEIGHTS_DIR, metadata, pretrained
from ..zoo.checkpoints import write_metrics

BOUNDARY, SIGMA = "valid", 0.01


def load_adarevd(checkpoint: str | Path) -> AdaRevD:
    """A trained :class:`~deblur_edu.learned.AdaRevD` (hash-verified), in eval mode."""
    if metadata(str(checkpoint))["model_name"] != "adarevd":
        raise ValueError(f"{checkpoint} is not an AdaRevD checkpoint.")
    return pretrained(str(checkpoint))


@torch.no_grad()
def per_sub_decoder(model: AdaRevD, bench: Benchmark) -> dict:
    """Mean PSNR/SSIM after each sub-decoder (whole images), and the end-to-end U-Net's."""
    unet = pretrained("reblur-l1-cpu")
    n = len(model.decoder.columns)
    cols: dict[str, list[torch.Tensor]] = {f"{m}_{i}": [] for m in ("psnr", "ssim") for i in range(1, n + 1)}
    cols |= {"unet_psnr": [], "unet_ssim": [], "blurred_psnr": []}
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, BOUNDARY, SIGMA)
        crop = score_crop(k)
        for i, x_hat in enumerate(model.estimates(y), start=1):
            cols[f"psnr_{i}"].append(psnr(x_hat.clamp(0, 1), x, crop=crop))
            cols[f"ssim_{i}"].append(ssim(x_hat.clamp(0, 1), x, crop=crop))
        u = unet(y).clamp(0, 1)
        cols["unet_psnr"].append(psnr(u, x, crop=crop))
        cols["unet_ssim"].append(ssim(u, x, crop=crop))
        cols["blurred_psnr"].append(psnr(y.clamp(0, 1), x, crop=crop))
    means = {name: float(torch.cat(v).mean()) for name, v in cols.items()}
    return {"psnr": [means[f"psnr_{i}"] for i in range(1, n + 1)],
            "ssim": [means[f"ssim_{i}"] for i in range(1, n + 1)],
            "unet": {"psnr": means["unet_psnr"], "ssim": means["unet_ssim"]}, "blurred_psnr": means["blurred_psnr"]}


def tile_grid(y: torch.Tensor, tile: int, overlap: int) -> tuple[int, int]:
    """How many tile rows and columns cover ``y``."""
    return len(tile_starts(y.shape[-2], tile, overlap)), len(tile_starts(y.shape[-1], tile, overlap))


def tile_classes(y: torch.Tensor, x: torch.Tensor, tile: int, overlap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The blurry tiles (as one batch) and each tile's true degradation class."""
    ty, _, _ = gather_tiles(y, tile, overlap)
    tx, _, _ = gather_tiles(x, tile, overlap)
    return ty, degradation_class(ty, tx)


def true_exits(model: AdaRevD, y: torch.Tensor, x: torch.Tensor, tile: int, overlap: int, knob: int = 0) -> torch.Tensor:
    """The exit points a perfect classifier would give: from each tile's true degradation class."""
    _, classes = tile_classes(y, x, tile, overlap)
    exits = exit_after(classes, len(model.decoder.columns), model.classifier.fc.out_features, knob)
    return exits.reshape(y.shape[0], *tile_grid(y, tile, overlap))


@torch.no_grad()
def classifier_accuracy(model: AdaRevD, bench: Benchmark, tile: int, overlap: int) -> float:
    """Fraction of the benchmark's tiles whose degradation class the classifier predicts right."""
    correct = total = 0
    for ki in range(len(bench.kernels)):
        y, x = bench.batch(ki, BOUNDARY, SIGMA)
        ty, classes = tile_classes(y, x, tile, overlap)
        predicted = model.classifier(model.decoder.encode(ty)[1][-1]).argmax(1)
        correct += int((predicted == classes).sum())
        total += len(ty)
    return correct / total


def run_setting(model: AdaRevD, bench: Benchmark, tile: int, overlap: int, setting: dict, chunk: int = 32) -> dict:
    """One pass over the benchmark with tiled inference in one setting (all / knob / oracle)."""
    n = len(model.decoder.columns)
    scores, exits_all, decode, encode = [], [], 0.0, 0.0
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, BOUNDARY, SIGMA)
        if setting["kind"] == "all":
            exits = torch.full((y.shape[0], *tile_grid(y, tile, overlap)), n)
        elif setting["kind"] == "oracle":
            exits = true_exits(model, y, x, tile, overlap)
        else:
            exits = None
        timings: dict[str, float] = {}
        out, used = adaptive_deblur(model.decoder, model.classifier, y, tile, overlap, setting.get("knob", 0),
                                    exits=exits, timings=timings, chunk=chunk)
        decode += timings["decode"]
        encode += timings["encode"]
        scores.append(psnr(out.clamp(0, 1), x, crop=score_crop(k)))
        exits_all.append(used.flatten())
    return {**setting, "psnr": float(torch.cat(scores).mean()), "mean_exit": float(torch.cat(exits_all).float().mean()),
            "decode_seconds": decode, "encode_seconds": encode}


@torch.no_grad()
def exiting_curve(model: AdaRevD, bench: Benchmark, tile: int, overlap: int, knobs: list[int],
                  repeats: int = 3, chunk: int = 32) -> list[dict]:
    """The reference (every tile through all sub-decoders), each knob and the oracle: PSNR,
    mean exit, decoder seconds (median over ``repeats`` interleaved runs), and the saving."""
    settings = [{"kind": "all"}] + [{"kind": "knob", "knob": q} for q in knobs] + [{"kind": "oracle", "knob": 0}]
    runs = [[run_setting(model, bench, tile, overlap, s, chunk) for s in settings] for _ in range(repeats)]
    accuracy = classifier_accuracy(model, bench, tile, overlap)  # the same for every knob: computed once
    rows = []
    for i, setting in enumerate(settings):
        row = dict(runs[0][i])
        for key in ("decode_seconds", "encode_seconds"):
            row[key] = statistics.median(r[i][key] for r in runs)
        if setting["kind"] == "knob":
            row["classifier_accuracy"] = accuracy
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


def markdown(out: dict, memory: dict | None = None) -> str:
    """The README's chapter-6 tables (with :mod:`~deblur_edu.experiments.ch6_reversible_cost`'s JSON: memory too)."""
    q = out["sub_decoders"]
    head = "| | " + " | ".join(f"after sub-decoder {i}" for i in range(1, len(q["psnr"]) + 1)) + " | chapter-5 U-Net |"
    lines = [head, "|---" * (len(q["psnr"]) + 2) + "|",
             "| PSNR (dB) | " + " | ".join(f"{p:.2f}" for p in q["psnr"]) + f" | {q['unet']['psnr']:.2f} |",
             "", "| tiled inference | PSNR (dB) | Δ PSNR | mean exit | decoder time saved |", "|---|---|---|---|---|"]
    for row in out["exiting"]:
        lines.append(f"| {label(row)} | {row['psnr']:.2f} | {row['psnr_change']:+.3f} | {row['mean_exit']:.2f} | "
                     f"{100 * row['saving']:.0f} % |")
    s = out["setting"]
    lines += ["", f"Set12 {s['split']} images × {s['kernels']} camera shakes of {s['kernel_size']} px, "
                  f"`{s['boundary']}` blur, σ = {s['sigma']:g}: "
                  f"{s['cases']} cases. Tiles of {s['tile']} px overlapping by {s['overlap']}, decoded {s['chunk']} at a time; "
                  f"decoder time is the "
                  f"median of {s['repeats']} runs on {s['threads']} CPU thread(s); classifier accuracy on the tiles "
                  f"{out['exiting'][1].get('classifier_accuracy', float('nan')):.2f}; commit `{out['environment']['commit'][:10]}`."]
    if memory is not None:
        m = memory["settings"]
        ratios = ", ".join(f"{r['columns']}: {r['ratio']:.2f}" for r in memory["rows"])
        lines.append(f"Peak training memory reversible / plain (allocator peak of one step, batch {m['batch']} × "
                     f"{m['size']}², {m['device']}), by number of sub-decoders — {ratios}.")
    return "\n".join(lines)


def record(out: dict, checkpoint: Path) -> None:
    """Write the per-sub-decoder PSNR and the exiting curve into the checkpoint's metadata."""
    write_metrics(checkpoint, {"sub_decoders": out["sub_decoders"], "exiting": out["exiting"], "setting": out["setting"],
                               "source": "python -m deblur_edu.experiments.ch6_adarevd_eval (benchmarks/adarevd.json)",
                               "commit": out["environment"]["commit"]})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.ch6_adarevd_eval", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=str(WEIGHTS_DIR / "adarevd-cpu"))
    p.add_argument("--split", default="test", choices=["test", "tune"])
    p.add_argument("--crop", type=positive_int, default=None, help="image crop (default: the benchmark's)")
    p.add_argument("--tile", type=positive_int, default=64)
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--knobs", type=int, nargs="+", default=[-2, -1, 0, 1])
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--chunk", type=positive_int, default=32, help="tiles decoded per call (the same in every setting)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (timings: fix it)")
    p.add_argument("--json", default=None)
    p.add_argument("--readme", default=None, help="replace the <!-- adarevd --> block of this file")
    p.add_argument("--record", action="store_true", help="write the metrics into the checkpoint's metadata")
    p.add_argument("--memory", default=None, help="reversible_cost's JSON, for the README's memory line")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    checkpoint = Path(args.checkpoint).with_suffix(".pt")
    with user_errors(p):  # every mistake in the arguments or the data: one line, exit 2, before the run
        check_tiling(args.tile, args.overlap)
        if args.readme:
            block_bounds(args.readme, "adarevd")
        memory = json.loads(Path(args.memory).read_text()) if args.memory else None
        model = load_adarevd(checkpoint)
        bench = chapter_benchmark(args.split, crop=args.crop)
        if args.readme:
            refuse_fallback(bench.data, args.readme)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    out = {"setting": {"split": args.split, "boundary": BOUNDARY, "sigma": SIGMA, "tile": args.tile,
                       "overlap": args.overlap, "chunk": args.chunk, "repeats": args.repeats, "threads": torch.get_num_threads(),
                       "cases": len(bench.images) * len(bench.kernels), "kernels": len(bench.kernels),
                       "kernel_size": SHAKE_SIZE, "crop": bench.crop, "checkpoint": str(checkpoint)},
           "sub_decoders": per_sub_decoder(model, bench),
           "exiting": exiting_curve(model, bench, args.tile, args.overlap, args.knobs, args.repeats, args.chunk)}
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
