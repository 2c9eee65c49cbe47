r"""Can a reblurring module learn to reblur this deblurrer's output? A measurement.

Chapter 5's reblurring modules stay close to the identity. Before blaming their size, measure:
freeze a deblurrer ``M_D`` (the shipped L1 U-Net, ``reblur-l1-cpu``), train fresh reblurring
modules ``M_R`` of two shapes on ``L_blur + L_sharp`` (Nah et al. 2022, see
:mod:`deblur_edu.learned.reblur`) on the chapter's training recipe, and compare on a held-out
batch

    L_blur(M_R) = ‖M_R(L̂) − B‖₁     against     L_blur(identity) = ‖L̂ − B‖₁,

the price of doing nothing. A module that learned to reblur pays clearly less than the
identity; one that did not pays about the same. The two shapes:

- ``resnet``: the chapter's :class:`~deblur_edu.learned.Reblurrer` (two residual blocks, a
  window of about 11 pixels);
- ``unet``: a 2-level :class:`~deblur_edu.learned.UNet`, which already has the module's form
  ``z + U(z)`` and a window several times wider than the 13-pixel blur.

The recipe is the data section of the preset ``reblur-cpu``. Each shape is trained three
ways: as the paper does (``L_blur + L_sharp``, the recipe's noise); on noise-free data, so
that noise in ``B`` (which no module can predict) is ruled out as the reason; and with
``L_sharp`` weighted ``w = 1/4``, so that changing a clean image costs less than the blur it
rebuilds (:func:`~deblur_edu.learned.reblur.reblur_module_loss`). The reblur gaps
``‖M_R(z) − z‖₁`` are printed on the sharp image ``S``, the blurry ``B``, the deblurred
``L̂ = M_D(B)`` and the deblurred sharp image ``M_D(S)``. A module that learned to amplify the
blur *left in* ``L̂`` changes ``L̂`` clearly more than ``M_D(S)``; one that blurs whatever it
sees changes both alike. The trained modules of shipped checkpoints (``--shipped``: the
critic ``reblur-module-cpu`` and the judge ``reblur-judge``) are measured the same way.

    python -m deblur_edu.experiments.ch5_reblur_probe --steps 600 --json benchmarks/reblur_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..cli import positive_int, user_errors
from ..learned import Reblurrer, UNet
from ..learned.reblur import reblur_module_loss
from ..runtime import git_commit, pick_device, provenance, seed_everything
from ..synthesis import BlurDataset
from ..train import load_config, validation_batch
from ..zoo import pretrained
from ..zoo.shipped import checkpoint_path
from ..zoo.checkpoints import write_metrics

SHAPES = {"resnet": lambda: Reblurrer(1, 32, 2), "unet": lambda: UNet(1, width=16, levels=2)}


def stacked(dataset: BlurDataset, indices: range) -> tuple[torch.Tensor, torch.Tensor]:
    """(blurred, sharp) batches of the samples ``indices``."""
    samples = [dataset[i] for i in indices]
    return torch.stack([s["blurred"] for s in samples]), torch.stack([s["sharp"] for s in samples])


#: (noise ceiling or None for the recipe's, weight w of L_sharp): the three ways each shape is trained
VARIANTS = ((None, 1.0), (0.0, 1.0), (None, 0.25))


def train_reblurrer(M_D: nn.Module, M_R: nn.Module, recipe: dict, steps: int, batch_size: int = 8,
                    lr: float = 2e-3, sharp_weight: float = 1.0) -> nn.Module:
    """Train ``M_R`` alone on ``L_blur + w·L_sharp`` against the frozen ``M_D`` (Adam, cosine)."""
    data = BlurDataset(**recipe)
    optimiser = torch.optim.Adam(M_R.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for step in range(steps):
        blurred, sharp = stacked(data, range(step * batch_size, (step + 1) * batch_size))
        with torch.no_grad():
            deblurred, deblurred_sharp = M_D(blurred), M_D(sharp)
        loss = reblur_module_loss(M_R, deblurred, blurred, deblurred_sharp, sharp_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    return M_R


@torch.no_grad()
def measure(M_D: nn.Module, M_R: nn.Module, recipe: dict, size: int = 64) -> dict[str, float]:
    """``L_blur`` of ``M_R`` and of the identity, their ratio, and the reblur gaps, on the recipe's
    validation batch (another seed than training's)."""
    batch = validation_batch(recipe, size, torch.device("cpu"))
    blurred, sharp = batch["blurred"], batch["sharp"]
    deblurred = M_D(blurred)
    gap = lambda z: float((M_R(z) - z).abs().mean())
    learned, identity = float(F.l1_loss(M_R(deblurred), blurred)), float(F.l1_loss(deblurred, blurred))
    return {"L_blur": learned, "L_blur_identity": identity, "ratio": learned / identity,
            "gap_sharp": gap(sharp), "gap_blurred": gap(blurred), "gap_deblurred": gap(deblurred),
            "gap_deblurred_sharp": gap(M_D(sharp))}


def probe(M_D: nn.Module, recipe: dict, steps: int, shapes: list[str],
          variants: tuple[tuple[float | None, float], ...] = VARIANTS, seed: int = 0) -> list[dict]:
    """Every shape × every variant ``(σ max, w)``: train a fresh ``M_R`` (seeded) on ``recipe``
    with that noise ceiling (``None``: the recipe's) and ``L_sharp`` weight, then :func:`measure` it."""
    M_D = M_D.eval().requires_grad_(False)
    rows = []
    for shape in shapes:
        for sigma_max, sharp_weight in variants:
            sigma_max = recipe["sigma_range"][1] if sigma_max is None else sigma_max
            seed_everything(seed)
            noisy = {**recipe, "sigma_range": [0.0, sigma_max]}
            M_R, started = SHAPES[shape](), time.time()
            train_reblurrer(M_D, M_R, noisy, steps, sharp_weight=sharp_weight)
            rows.append({"shape": shape, "sigma_max": sigma_max, "sharp_weight": sharp_weight, "steps": steps,
                         "weights": sum(p.numel() for p in M_R.parameters()),
                         "seconds": time.time() - started, **measure(M_D, M_R, noisy)})
    return rows


def measure_shipped(M_D: nn.Module, names: list[str], recipe: dict) -> list[dict]:
    """:func:`measure` the reblurring modules of shipped chapter-5 checkpoints against ``M_D``, with
    the recipe's noise and without."""
    rows = []
    for name in names:
        M_R = pretrained(name).reblurrer
        for sigma_max in (recipe["sigma_range"][1], 0.0):
            rows.append({"shape": name, "sigma_max": sigma_max,
                         **measure(M_D, M_R, {**recipe, "sigma_range": [0.0, sigma_max]})})
    return rows


def record_module(rows: list[dict], name: str, deblurrer: str) -> None:
    """Write what the probe measured of the shipped module ``name`` (against the shipped
    ``deblurrer``) into its metadata (``metrics``)."""
    measured = [r for r in rows if r["shape"] == name]
    if not measured:
        raise SystemExit(f"--record: {name} was not measured; keep it in --shipped.")
    write_metrics(checkpoint_path(name),
                  {"probe": measured, "against": deblurrer,
                   "source": "python -m deblur_edu.experiments.ch5_reblur_probe --record (benchmarks/reblur_probe.json)",
                   "commit": git_commit()})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.ch5_reblur_probe", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=positive_int, default=600)
    p.add_argument("--deblurrer", default="reblur-l1-cpu", help="shipped checkpoint whose M_D is frozen")
    p.add_argument("--shipped", default="reblur-module-cpu,reblur-judge",
                   help="shipped checkpoints whose trained M_R is measured too (comma-separated; '' for none)")
    p.add_argument("--json", default=None)
    p.add_argument("--record", action="store_true", help="write the measurement of reblur-module-cpu into its metadata")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    names = [n.strip() for n in args.shipped.split(",") if n.strip()]
    with user_errors(p):  # a missing checkpoint: one line, exit 2, before the probe's training runs
        if args.record and "reblur-module-cpu" not in names:
            raise ValueError("--record writes the measurement of reblur-module-cpu: keep it in --shipped.")
        M_D = pretrained(args.deblurrer).deblurrer
        for name in names:
            pretrained(name)  # every named checkpoint must load before the probe's training runs
    recipe = load_config("reblur", "cpu")["data"]
    rows = probe(M_D, recipe, args.steps, list(SHAPES))
    shipped = measure_shipped(M_D, names, recipe)
    print("gaps ‖M_R(z) − z‖₁ × 10³ on z = S, B, L̂ = M_D(B), M_D(S)")
    print(f"{'M_R':<18}{'σ max':>6}{'w':>6}{'L_blur':>9}{'identity':>10}{'ratio':>7}"
          f"{'S':>7}{'B':>7}{'L̂':>7}{'M_D(S)':>8}")
    for r in rows + shipped:
        w = f"{r['sharp_weight']:>6.2f}" if "sharp_weight" in r else f"{'':>6}"
        print(f"{r['shape']:<18}{r['sigma_max']:>6.2f}{w}{r['L_blur']:>9.5f}"
              f"{r['L_blur_identity']:>10.5f}{r['ratio']:>7.3f}{1e3 * r['gap_sharp']:>7.2f}{1e3 * r['gap_blurred']:>7.2f}"
              f"{1e3 * r['gap_deblurred']:>7.2f}{1e3 * r['gap_deblurred_sharp']:>8.2f}")
    if args.json:
        out = {"deblurrer": args.deblurrer, "recipe": recipe, "rows": rows, "shipped": shipped,
               "environment": provenance(pick_device("cpu"), data="the reblur-cpu recipe's training data",
                                         command="python -m deblur_edu.experiments.ch5_reblur_probe " + " ".join(argv))}
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    if args.record:
        record_module(shipped, "reblur-module-cpu", args.deblurrer)
        print("recorded the probe of reblur-module-cpu in its metadata")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
