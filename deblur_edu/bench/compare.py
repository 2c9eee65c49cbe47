"""Every method of the book side by side: the comparison of chapter 7 and the README.

    python -m deblur_edu.bench.compare [--quick] [--methods a,b,...] [--json OUT] [--readme README.md]
        [--figure PNG] [--device cpu|cuda] [--update [--from-bench BENCH.json]]

Runs the benchmark of :mod:`deblur_edu.bench.run` (Set12 09–12 × Levin et al.'s 8 kernels,
``valid`` and ``circular`` blur, σ = 0.01 and 0.03) on every method in :data:`COMPARED`
that is available (learned ones need their shipped checkpoint), and adds what the bench
does not know: each method's no-reference sharpness (blur effect, lower is sharper), its
parameters (those used at inference) and its training cost (from the checkpoint's
metadata; for AdaRevD, its sub-decoders plus the frozen encoder's own training).
``--quick`` runs a subset on small crops (the chapter's live mode on a CPU). ``--update`` re-runs
only ``--methods`` and puts them into the comparison already in ``--json`` (same protocol), keeping the
other methods' results; the JSON and the table's footnote say which methods were re-run, when and at
which commit — their seconds per image come from that later run. With ``--from-bench BENCH.json`` the
``--methods`` are not run again: their rows are taken from that benchmark run (``python -m deblur_edu.bench
… --json BENCH.json``), which :func:`~deblur_edu.bench.run.evaluate` wrote as it writes this one's, if it
measured the same protocol, both boundaries and both noise levels; the update names that run.
``--drop METHODS`` takes methods out of the comparison in ``--json`` (whose checkpoints were retrained into
something the comparison no longer shows, e.g. chapter 5's fine-tunings, which that chapter compares with intervals);
it runs nothing, and the footnote's updates list the drop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..cli import names, user_errors
from ..learned import AdaRevD, ReblurDeblurrer
from ..runtime import git_commit, pick_device, write_json
from ..zoo.shipped import built_on, metadata
from .methods import available_methods, get_method, load_defaults, shipped_model
from .protocol import Benchmark, load_benchmark
from .report import block_bounds, environment, refuse_fallback, replace_block
from .run import check_methods, evaluate

#: the methods of the comparison, in the book's order, with the chapter that builds each
COMPARED = {
    "blurred": 1, "inverse": 2, "wiener": 2, "wiener-taper": 2, "rl-30": 2, "tv-circular": 2, "tv": 2, "hyper-laplacian": 2,
    "pnp": 2, "rgdn": 3, "deq-jfb": 4, "deq-implicit": 4,
    "blind-tv": 5, "blind-refiner": 5, "reblur-l1": 5, "adarevd": 6,
}
#: quick mode: a method or two of every chapter (the blind two-stage ones run blind TV: a second an image), one image,
#: two kernels, small crops
QUICK = ("blurred", "wiener-taper", "tv", "rgdn", "reblur-l1", "adarevd")


def inference_parameters(model: torch.nn.Module, method: str) -> int:
    """Weights a method uses at test time: the deblurrer only for the chapter-5 models (plus
    ``M_R`` for test-time adaptation), the encoder part of the U-Net, the sub-decoders and the
    classifier for AdaRevD, everything otherwise."""
    count = lambda *modules: sum(p.numel() for m in modules for p in m.parameters())
    if isinstance(model, AdaRevD):
        unet = model.decoder.encoder
        return count(unet.stem, unet.encoders, unet.downs, unet.bottleneck, model.decoder.columns, model.classifier)
    if isinstance(model, ReblurDeblurrer):
        return count(model.deblurrer) + (count(model.reblurrer) if method == "reblur-tta" else 0)
    return count(model)


def training_cost(checkpoint: str) -> dict:
    """Minutes of training (with those of the checkpoints it was started from, :func:`built_on`:
    chapter 6's frozen encoder, chapter 5's fine-tuned L1 U-Net and its critic; and for a second stage, the
    building of its first stage's bank), steps and device."""
    meta = metadata(checkpoint)
    minutes = (meta["training"]["wall_seconds"] + meta["training"].get("first_stage_seconds", 0.0)) / 60
    for base in built_on(checkpoint):
        minutes += metadata(base)["training"]["wall_seconds"] / 60
    return {"minutes": minutes, "steps": meta["training"]["steps"], "device": meta["training"]["device"]}


def describe(method: str) -> dict:
    """Chapter, description, inference parameters and training cost of one method."""
    m = get_method(method)
    info = {"method": method, "chapter": COMPARED.get(method), "description": m.description}
    if m.checkpoint is not None:
        model = shipped_model(m.checkpoint, torch.device("cpu"))
        info |= {"checkpoint": m.checkpoint, "parameters": inference_parameters(model, method),
                 "training": training_cost(m.checkpoint)}
    return info


def given(method: str) -> str:
    """What a method is given besides y: ``k, σ`` (non-blind), or nothing (blind: it estimates them)."""
    return "—" if get_method(method).blind else "k, σ"


def markdown(out: dict) -> str:
    """The comparison table: what each method is given, PSNR / SSIM per setting, blur effect, time,
    weights, training. Blind methods are marked: they are told nothing but y, the rest k and σ."""
    cols = sorted({(r["boundary"], r["sigma"]) for r in out["results"]}, key=lambda c: (c[0] != "valid", c[1]))
    by = {(r["method"], r["boundary"], r["sigma"]): r for r in out["results"]}
    lines = ["| method | ch. | given | " + " | ".join(f"{b} σ={s:g}" for b, s in cols)
             + " | blur effect ↓ | s / image | weights | training |",
             "|---|---:|:---:|" + "---:|" * (len(cols) + 4)]
    for info in out["methods"]:
        m = info["method"]
        rows = [by[(m, b, s)] for b, s in cols if (m, b, s) in by]
        if not rows:
            continue
        cells = [f"{r['psnr']:.2f} / {r['ssim']:.3f}" for r in rows]
        blur = sum(r["blur_effect"] for r in rows) / len(rows)
        seconds = sum(r["seconds_per_image"] for r in rows) / len(rows)
        weights = f"{info['parameters']:,}" if "parameters" in info else "—"
        train = f"{info['training']['minutes']:.0f} min {info['training']['device']}" if "training" in info else "—"
        lines.append(f"| `{m}` | {info['chapter']} | {given(m)} | " + " | ".join(cells)
                     + f" | {blur:.3f} | {seconds:.3f} | {weights} | {train} |")
    env = out["environment"]
    lines += ["", "*given*: what a method receives besides y. The blind methods (—) estimate the kernel and the noise "
                  "from y alone, a harder problem: compare them with each other, not with the methods given k. "
                  "Scored here without alignment, they also pay for not knowing where each kernel sat in its frame; "
                  "their own benchmarks (`--split blind`, and this split with `--align 4`) align every estimate first. "
                  f"Mean PSNR (dB) / SSIM per setting; blur effect and seconds per image are means over the settings. "
                  f"Split `{env['split']}`: images {', '.join(env['images'])} ({env['crop']}² crops) × {env['kernels']} "
                  f"kernels; {env['cpu']}, {env['torch_threads']} threads, torch {env['torch']}, {env['device']}; "
                  f"commit `{env['commit'][:10]}`."]
    shown = {m["method"] for m in out["methods"]}
    for u, methods in latest_updates(env.get("updates", []), shown):
        lines[-1] += (f" Re-run later with `--update` ({u['date'][:10]}, commit `{u['commit'][:10]}`): "
                      f"{', '.join(f'`{m}`' for m in methods)}; their seconds per image are from that run.")
    for u in env.get("updates", []):
        gone = [m for m in u.get("dropped", []) if m not in shown]  # a method added back later is in the table again
        if gone:
            lines[-1] += (f" Taken out with `--drop` ({u['date'][:10]}, commit `{u['commit'][:10]}`): "
                          f"{', '.join(f'`{m}`' for m in gone)}.")
    return "\n".join(lines)


def latest_updates(updates: list[dict], shown: set[str] | None = None) -> list[tuple[dict, list[str]]]:
    """Each ``--update`` run with the methods whose numbers it still holds (a method re-run again later
    counts for the later run only; with ``shown``, only methods still in the table); runs that hold none
    are left out. Oldest first."""
    seen: set[str] = set()
    kept = []
    for u in reversed(updates):
        methods = [m for m in u.get("methods", []) if m not in seen and (shown is None or m in shown)]
        seen.update(u.get("methods", []))
        if methods:
            kept.append((u, methods))
    return kept[::-1]


def figure(out: dict, path: str) -> None:
    """The README's figure: each method's mean PSNR over the settings against its time per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, info in enumerate(out["methods"]):
        rows = [r for r in out["results"] if r["method"] == info["method"]]
        p = sum(r["psnr"] for r in rows) / len(rows)
        t = sum(r["seconds_per_image"] for r in rows) / len(rows)
        ax.scatter(t, p, color=plt.cm.tab10(info["chapter"] - 1))
        below = i % 2  # alternate labels above and below: neighbours in the table often sit close
        ax.annotate(info["method"], (t, p), fontsize=8, xytext=(4, -10 if below else 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(f"seconds per image ({out['environment']['device']}, log scale)")
    ax.set_ylabel("mean PSNR over boundaries and noise levels (dB)")
    ax.set_title("every method of the book on Set12 × Levin's kernels (colour = chapter)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.bench.compare", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a subset on small crops (minutes on a CPU)")
    p.add_argument("--methods", type=names, default=None, help=f"comma-separated from {', '.join(COMPARED)}")
    p.add_argument("--json", default=None)
    p.add_argument("--readme", default=None, help="write the table into this README's <!-- compare --> block")
    p.add_argument("--figure", default=None, help="write the PSNR-against-time figure (PNG) here")
    p.add_argument("--device", default=None)
    p.add_argument("--drop", type=names, default=None, metavar="METHODS",
                   help="comma-separated methods to take out of the comparison in --json (nothing is run)")
    p.add_argument("--update", action="store_true",
                   help="re-run only --methods and merge them into the comparison in --json (the others are kept)")
    p.add_argument("--from-bench", default=None, metavar="BENCH_JSON",
                   help="with --update: take --methods' rows from this benchmark run's JSON instead of running them again")
    return p


#: the settings of the comparison: every method is measured on each (boundary, σ)
SETTINGS = [(boundary, sigma) for boundary in ("valid", "circular") for sigma in (0.01, 0.03)]


def from_bench(path: str, methods: list[str], protocol: dict) -> dict:
    """A comparison run made of ``methods``' rows in the benchmark JSON ``path``: its protocol must be
    ``protocol``'s (:data:`PROTOCOL`) and it must hold every setting of :data:`SETTINGS` for each method."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--from-bench: {path} does not exist; write it with python -m deblur_edu.bench ... --json {path}.")
    bench = json.loads(Path(path).read_text())
    env = bench.get("environment", {})
    if any(env.get(key) != protocol.get(key) for key in PROTOCOL):
        raise ValueError(f"--from-bench: {path} was measured on "
                         + ", ".join(f"{key}={env.get(key)!r}" for key in PROTOCOL) + ", the comparison on "
                         + ", ".join(f"{key}={protocol.get(key)!r}" for key in PROTOCOL) + "; rerun one of them.")
    by = {(r["method"], r["boundary"], r["sigma"]): r for r in bench["results"]}
    missing = [f"{m} {b} σ={s:g}" for m in methods for b, s in SETTINGS if (m, b, s) not in by]
    if missing:
        raise ValueError(f"--from-bench: {path} lacks {', '.join(missing)}; benchmark those methods with "
                         f"--boundaries valid circular --sigmas 0.01 0.03, or run the comparison without --from-bench.")
    return {"results": [by[(m, b, s)] for m in methods for b, s in SETTINGS],
            "methods": [describe(m) for m in methods],
            "environment": {**env, "command": f"{env.get('command', '')} (rows taken by compare --from-bench {path})"},
            "seconds": bench.get("seconds")}


def prepare(args: argparse.Namespace) -> tuple[list[str], torch.device, Benchmark]:
    """What a run needs, checked before it starts: the methods (a named one must exist and
    have its checkpoint; by default the available ones), the device, the benchmark — and a
    ``--readme`` that has its block and will not receive fallback results."""
    methods = args.methods
    if getattr(args, "update", False):
        if not methods or not args.json:
            raise ValueError("--update re-runs the --methods named and merges them into the comparison in --json: "
                             "give both.")
        if not Path(args.json).is_file():
            raise FileNotFoundError(f"--update: {args.json} does not exist; run the whole comparison first.")
    elif getattr(args, "from_bench", None):
        raise ValueError("--from-bench merges a benchmark run's rows into the comparison in --json: add --update.")
    if methods:
        check_methods(methods)
    else:
        ready = set(available_methods())
        methods = [m for m in (QUICK if args.quick else COMPARED) if m in ready]
    readme = getattr(args, "readme", None)
    if readme:
        block_bounds(readme, "compare")
    device = pick_device(args.device)
    bench = load_benchmark("test", crop=128 if args.quick else None, fallback=True)
    if readme:
        refuse_fallback(bench.data, readme)
    if args.quick:
        bench.images = dict(list(sorted(bench.images.items()))[:1])
        bench.kernels = bench.kernels[:2]
    return methods, device, bench


def run(args: argparse.Namespace, progress: bool = True,
        prepared: tuple[list[str], torch.device, Benchmark] | None = None) -> dict:
    """The comparison as a dict: per-setting results, method descriptions, environment
    (``prepared``: :func:`prepare`'s result, when the caller has checked it already)."""
    methods, device, bench = prepared if prepared is not None else prepare(args)
    defaults = load_defaults()
    start = time.time()
    results = []
    for m in methods:
        for boundary in ("valid", "circular"):
            for sigma in (0.01, 0.03):
                results.append(evaluate(bench, m, boundary, sigma, device, defaults))
        if progress:
            print(f"  done {m} ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    return {"results": results, "methods": [describe(m) for m in methods],
            "environment": environment(device, bench, "python -m deblur_edu.bench.compare " + " ".join(args.argv)),
            "seconds": time.time() - start}


#: what two runs must share for their tables to be merged
PROTOCOL = ("split", "data", "images", "kernels", "crop")


def check_same_protocol(old: dict, new: dict) -> None:
    """Refuse to merge runs that measured different things (environments as :func:`environment` writes)."""
    if any(old.get(key) != new.get(key) for key in PROTOCOL):
        raise ValueError("--update: the comparison in --json was measured on "
                         + ", ".join(f"{key}={old.get(key)!r}" for key in PROTOCOL) + ", this run would be on "
                         + ", ".join(f"{key}={new.get(key)!r}" for key in PROTOCOL) + "; run the whole comparison instead.")


def merge(old: dict, new: dict) -> dict:
    """``old`` with the methods of ``new`` replaced (or added, in the book's order); ``updates`` lists
    each re-run (methods, commit, date, command)."""
    a, b = old["environment"], new["environment"]
    check_same_protocol(a, b)
    rerun = {m["method"] for m in new["methods"]}
    order = list(COMPARED)
    rank = lambda method: order.index(method) if method in order else len(order)  # noqa: E731
    methods = sorted([m for m in old["methods"] if m["method"] not in rerun] + new["methods"],
                     key=lambda m: rank(m["method"]))
    results = sorted([r for r in old["results"] if r["method"] not in rerun] + new["results"],
                     key=lambda r: rank(r["method"]))
    update = {"methods": sorted(rerun, key=rank), **{k: b[k] for k in ("commit", "date", "command")},
              "seconds": new["seconds"]}
    return {**old, "results": results, "methods": methods,
            "environment": {**a, "updates": [*a.get("updates", []), update]}}


def drop(old: dict, methods: list[str], command: str) -> dict:
    """``old`` without ``methods`` (each must be in it); ``updates`` records the drop."""
    present = {m["method"] for m in old["methods"]}
    missing = [m for m in methods if m not in present]
    if missing:
        raise ValueError(f"--drop: {', '.join(missing)} not in the comparison (it has {', '.join(sorted(present))}).")
    gone = set(methods)
    update = {"dropped": sorted(gone), "commit": git_commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": command}
    return {**old, "results": [r for r in old["results"] if r["method"] not in gone],
            "methods": [m for m in old["methods"] if m["method"] not in gone],
            "environment": {**old["environment"], "updates": [*old["environment"].get("updates", []), update]}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    args.argv = argv
    if args.drop:
        with user_errors(p):
            if not args.json or not Path(args.json).is_file():
                raise ValueError("--drop takes methods out of the comparison in --json: name an existing one.")
            if args.update or args.methods or args.from_bench or args.quick:
                raise ValueError("--drop runs nothing: leave out --update, --methods, --from-bench and --quick.")
            if args.readme:
                block_bounds(args.readme, "compare")
            out = drop(json.loads(Path(args.json).read_text()), args.drop,
                       "python -m deblur_edu.bench.compare " + " ".join(argv))
        return finish(args, out)
    with user_errors(p):  # a mistake in the arguments: one line, exit 2, before the run
        prepared = prepare(args)
        old = json.loads(Path(args.json).read_text()) if args.update else None
        if old is not None:
            _, device, bench = prepared
            check_same_protocol(old["environment"], environment(device, bench, ""))
        if args.from_bench:
            out = from_bench(args.from_bench, prepared[0], old["environment"])
    if not args.from_bench:
        out = run(args, prepared=prepared)
    if old is not None:
        out = merge(old, out)
    return finish(args, out)


def finish(args: argparse.Namespace, out: dict) -> int:
    """Print the table; write the JSON, the README block and the figure that were asked for."""
    table = markdown(out)
    print(table)
    if args.json:
        write_json(args.json, out)
    if args.readme:
        replace_block(args.readme, "compare", table)
    if args.figure:
        figure(out, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
