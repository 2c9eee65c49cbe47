"""The benchmark CLI: every method on Levin et al.'s kernels × Set12, one table, one JSON.

Usage::

    python -m deblur_edu.bench [--images DIR] [--kernels PATH] [--crop 256]
        [--sigmas 0.01 0.03] [--boundaries circular valid] [--methods a,b,...]
        [--json OUT] [--device cpu|cuda] [--split test|tune|extra|blind] [--align PIXELS]

The protocol (cropping, the ``valid`` scene, per-case noise seeds, interior scoring) is
documented in :mod:`deblur_edu.bench.protocol`; the methods in :mod:`deblur_edu.bench.methods`.
Writes ``{"results": [{"method", "boundary", "sigma", "psnr", "ssim", "blur_effect",
"seconds_per_image", "cases", "warnings", "first_warning", "align"}], "speed": {...}, "environment": {...}}``,
where ``environment["data"]`` says where the images and kernels came from (``"levin09+set12"``,
``"user"``, ``"fallback"``, …; see :mod:`deblur_edu.bench.protocol`). A path given on the
command line that is missing, empty or unreadable is an error; the offline fallback is used
only when none was given, and ``--readme`` refuses its results.

``--align PIXELS`` scores every method after shifting each estimate (within ±PIXELS, to 1/16 px)
to match the truth, as blind benchmarks do (:mod:`deblur_edu.metrics.alignment`): a blind method
cannot know where the true kernel sat in its frame.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Callable

import torch

from ..classical import wiener
from ..classical.priors import grad_otf_power
from ..cli import names, noise_level, non_negative_int, positive_int, user_errors
from ..kernels import gaussian
from ..metrics import blur_effect, psnr, ssim
from ..metrics.alignment import align_to
from ..physics import psf2otf
from ..runtime import interleaved_medians, pick_device, synchronize, write_json
from ..train import validation_batch
from .methods import METHODS, available_methods, get_method, load_defaults
from .protocol import SPLITS, Benchmark, interior, load_benchmark, score_crop
from .report import block_bounds, environment, format_table, refuse_fallback, update_readme


def evaluate(
    bench: Benchmark,
    method_name: str,
    boundary: str,
    sigma: float,
    device: torch.device,
    defaults: dict | None = None,
    align: int = 0,
) -> dict:
    """Run one method on every (image, kernel) case of one (boundary, σ); mean scores.

    ``align > 0``: each estimate is first shifted (within ±``align`` px) to best match the truth
    (:func:`~deblur_edu.metrics.alignment.align_to`), and every score leaves ``align + 1`` more
    border pixels out.

    Warnings a method raises (e.g. a DEQ solve that stops at its iteration cap) are counted,
    one batch per kernel, and the first is kept: ``warnings`` and ``first_warning``.
    """
    method = get_method(method_name)
    psnrs, ssims, blurs, seconds = [], [], [], 0.0
    warned: list[str] = []
    for ki, k in enumerate(bench.kernels):
        y, x = bench.batch(ki, boundary, sigma)
        y, x, kd = y.to(device), x.to(device), k.to(device)
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x_hat = method(y, kd, sigma, defaults)
        synchronize(device)
        seconds += time.perf_counter() - start
        warned += [f"{w.category.__name__}: {w.message}" for w in caught]
        x_hat = x_hat.clamp(0, 1)
        r = score_crop(k)
        if align:
            x_hat = align_to(x_hat, x, align, r)[0].clamp(0, 1)
            r += align + 1
        psnrs.append(psnr(x_hat, x, crop=r).cpu())
        ssims.append(ssim(x_hat, x, crop=r).cpu())
        inner = interior(x_hat, r)
        if min(inner.shape[-2:]) > 11:  # blur effect's box filter needs room (tiny test crops have none)
            blurs.append(blur_effect(inner).cpu())
    cases = len(bench.kernels) * len(bench.images)
    return {
        "method": method_name,
        "boundary": boundary,
        "sigma": sigma,
        "psnr": float(torch.cat(psnrs).mean()),
        "ssim": float(torch.cat(ssims).mean()),
        "blur_effect": float(torch.cat(blurs).mean()) if blurs else None,  # None: crop too small to measure
        "seconds_per_image": seconds / cases,
        "cases": cases,
        "warnings": len(warned),
        "first_warning": warned[0] if warned else None,
        "align": align,
    }


def training_recipe_scores(models: dict[str, Callable[..., torch.Tensor]], data_cfg: dict,
                           device: torch.device, size: int = 16, defaults: dict | None = None) -> dict[str, float]:
    """Mean PSNR (dB) on the training loop's validation batch of TV and of each model.

    Is a learned model's gap to TV on the benchmark also there on the data it was trained on?
    The batch is :func:`deblur_edu.train.validation_batch`: ``size`` samples of the training
    recipe ``data_cfg`` (another seed, never trained on). TV and each ``models[name](y, k, σ)`` are told
    each sample's σ, as on the benchmark. Warnings (e.g. a DEQ's capped solve) are
    silenced here; :func:`evaluate` counts them.

    Example:
        >>> from deblur_edu.classical import wiener
        >>> cfg = {"length": 4, "patch": 32, "kernel_size": 9, "seed": 0}
        >>> scores = training_recipe_scores({"wiener": lambda y, k, s: wiener(y, k)}, cfg, torch.device("cpu"), size=2)
        >>> sorted(scores)
        ['TV', 'wiener']
    """
    batch = validation_batch(data_cfg, size, device)
    y, k, x = batch["blurred"], batch["kernel"], batch["sharp"]
    tv, d = get_method("tv"), defaults if defaults is not None else load_defaults()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        estimates = {"TV": torch.cat([tv(y[i : i + 1], k[i : i + 1], float(s), d) for i, s in enumerate(batch["sigma"])])}
        estimates.update({name: model(y, k, batch["sigma"]) for name, model in models.items()})
    return {name: float(psnr(z.clamp(0, 1), x).mean()) for name, z in estimates.items()}


def wiener_speed(device: torch.device, batch: int = 64, size: int = 256) -> dict:
    """Time the library's ``wiener`` on a (64, 1, 256², float32) batch against a bare FFT solve.

    The bare solve is only ``irfft2(F · rfft2(y))`` with the filter ``F`` precomputed; the
    library call also validates its input and builds the OTF. Medians of 21 interleaved runs.
    """
    g = torch.Generator().manual_seed(0)
    y = torch.rand(batch, 1, size, size, generator=g).to(device)
    k = gaussian(15, 2.0).to(device)
    balance = 1e-3
    K = psf2otf(k, (size, size))
    filt = K.conj() / (K.abs() ** 2 + balance * grad_otf_power((size, size), device))

    def bare():
        torch.fft.irfft2(filt * torch.fft.rfft2(y), s=(size, size))

    def library():
        wiener(y, k, balance=balance)

    t = interleaved_medians({"bare": bare, "library": library}, device=device)
    t_bare, t_lib = t["bare"], t["library"]
    return {"batch": batch, "size": size, "bare_fft_seconds": t_bare, "wiener_seconds": t_lib, "ratio": t_lib / t_bare}


def parser() -> argparse.ArgumentParser:
    """The command line (its types refuse a crop < 1, a NaN σ, a --methods list naming nothing)."""
    p = argparse.ArgumentParser(prog="python -m deblur_edu.bench", description=__doc__.split("\n")[0])
    p.add_argument("--images", default=None, help="folder of PNG test images (default: Set12 09–12); must exist")
    p.add_argument("--kernels", default=None,
                   help=".npz of 2-D kernels or a folder of PNG/NPY (default: Levin 2009); must exist")
    p.add_argument("--crop", type=positive_int, default=None, help="centre-crop size (default: 256 test, 224 tune)")
    p.add_argument("--sigmas", type=noise_level, nargs="+", default=[0.01, 0.03])
    p.add_argument("--boundaries", nargs="+", default=["circular", "valid"], choices=["circular", "valid"])
    p.add_argument("--methods", type=names, default=None,
                   help=f"comma-separated from {', '.join(METHODS)} (default: every registered method whose "
                        f"checkpoint is present)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--split", default="test", choices=sorted(SPLITS),
                   help="test: Set12 09-12 x Levin (default); tune: Set12 05, 07 x camera shakes; "
                        "extra: Set12 01-04, 06 x Levin (a second test set); blind: Set12 09-12 x 8 camera shakes of 13-31 px "
                        "(the blind deblurrers' test set)")
    p.add_argument("--data-dir", default=None,
                   help="data directory (default: $DEBLUR_EDU_DATA or the cache; without the files there and with "
                        "no path given, offline stand-in data, recorded as data: fallback)")
    p.add_argument("--align", type=non_negative_int, default=0, metavar="PIXELS",
                   help="score each estimate after shifting it (within ±PIXELS, to 1/16 px) to match the truth, as "
                        "blind benchmarks do: a blind method cannot know where the kernel sat in its frame (default 0: "
                        "no alignment)")
    p.add_argument("--no-speed", action="store_true", help="skip the Wiener batch-speed measurement")
    p.add_argument("--readme", default=None,
                   help="also write the results table into this README (checked before the run; never fallback data)")
    p.add_argument("--readme-block", default="bench",
                   help="the README block to fill, between <!-- BLOCK:start --> and <!-- BLOCK:end --> (default: bench)")
    return p


def check_methods(methods: list[str], defaults: dict | None = None) -> None:
    """Every method named exists and has what it needs: a learned one its checkpoint, a tuned one
    its weight in ``tuned_defaults.json`` (checked before a run, not minutes into it)."""
    d = defaults if defaults is not None else load_defaults()
    for m in methods:
        method = get_method(m)
        if not method.available():
            raise FileNotFoundError(f"method {m!r} needs the shipped checkpoint {method.checkpoint}, which is missing; "
                                    f"train it (see the Makefile) or leave {m!r} out of --methods.")
        if method.weight and m not in d["methods"]:
            raise ValueError(f"method {m!r} has no tuned {method.weight} yet: run python -m deblur_edu.bench.tune "
                             f"--methods {m}, or leave it out of --methods.")
        if method.runs:
            try:
                check_methods([method.runs], d)
            except (FileNotFoundError, ValueError) as e:
                raise type(e)(f"{m!r} runs {method.runs!r}, which cannot run: {e}") from None


def check_alignment(bench: Benchmark, align: int) -> None:
    """``--align`` leaves ``align + 1`` more border pixels out of every score: refuse a crop with nothing left."""
    if not align:
        return
    border = max(score_crop(k) for k in bench.kernels) + align + 1
    if bench.crop <= 2 * border:
        raise ValueError(f"--align {align} with the largest kernel leaves a border of {border} px on a {bench.crop}² crop: "
                         f"nothing to score. Use a smaller --align or a larger --crop (more than {2 * border}).")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    args.argv = argv
    with user_errors(p):  # every mistake in the arguments or the data: one line, exit 2, before the run
        methods = args.methods or available_methods()
        check_methods(methods)
        if args.readme:
            block_bounds(args.readme, args.readme_block)
        device = pick_device(args.device)
        bench = load_benchmark(args.split, args.images, args.kernels, args.crop, args.data_dir, fallback=True)
        check_alignment(bench, args.align)
        if args.readme:
            refuse_fallback(bench.data, args.readme)
    if bench.note:
        print("NOTE:", bench.note, file=sys.stderr)
    defaults = load_defaults()
    print(f"benchmark: split={bench.split} images={sorted(bench.images)} kernels={len(bench.kernels)} "
          f"crop={bench.crop} device={device}", flush=True)
    results = []
    for m in methods:
        for boundary in args.boundaries:
            for sigma in args.sigmas:
                results.append(evaluate(bench, m, boundary, sigma, device, defaults, args.align))
        print(f"  done {m}", flush=True)
    print(format_table(results))
    for r in results:
        if r["warnings"]:
            print(f"{r['method']}, {r['boundary']}, σ = {r['sigma']}: {r['warnings']} warning(s) over "
                  f"{len(bench.kernels)} batches; the first: {r['first_warning']}")
    out = {"results": results, "environment": environment(device, bench, "python -m deblur_edu.bench " + " ".join(args.argv))}
    if not args.no_speed:
        out["speed"] = {"wiener_batch": wiener_speed(device)}
        s = out["speed"]["wiener_batch"]
        print(f"\nWiener on a batch of {s['batch']}×{s['size']}²: {s['wiener_seconds'] * 1e3:.1f} ms, "
              f"bare FFT solve {s['bare_fft_seconds'] * 1e3:.1f} ms, ratio {s['ratio']:.2f}")
    if args.json:
        write_json(args.json, out)
    if args.readme:
        update_readme(args.readme, out, args.readme_block)
        print(f"updated the results table in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
