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

The recipe is the data section of the preset ``reblur-cpu``. Each shape is trained on its
noise and on noise-free data, so that noise in ``B`` (which no module can predict) is ruled
out as the reason too. The reblur gaps ``‖M_R(z) − z‖₁`` on the sharp, the blurry and the
deblurred images are printed as well.

    python -m deblur_edu.reblur_probe --steps 600 --json benchmarks/reblur_probe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .data import BlurDataset
from .learned import Reblurrer, UNet
from .learned.reblur import reblur_module_loss
from .runtime import seed_everything
from .train import load_config, validation_batch

SHAPES = {"resnet": lambda: Reblurrer(1, 32, 2), "unet": lambda: UNet(1, width=16, levels=2)}


def stacked(dataset: BlurDataset, indices: range) -> tuple[torch.Tensor, torch.Tensor]:
    """(blurred, sharp) batches of the samples ``indices``."""
    samples = [dataset[i] for i in indices]
    return torch.stack([s["blurred"] for s in samples]), torch.stack([s["sharp"] for s in samples])


def train_reblurrer(M_D: nn.Module, M_R: nn.Module, recipe: dict, steps: int, batch_size: int = 8,
                    lr: float = 2e-3) -> nn.Module:
    """Train ``M_R`` alone on ``L_blur + L_sharp`` against the frozen ``M_D`` (Adam, cosine)."""
    data = BlurDataset(**recipe)
    optimiser = torch.optim.Adam(M_R.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for step in range(steps):
        blurred, sharp = stacked(data, range(step * batch_size, (step + 1) * batch_size))
        with torch.no_grad():
            deblurred, deblurred_sharp = M_D(blurred), M_D(sharp)
        loss = reblur_module_loss(M_R, deblurred, blurred, deblurred_sharp)
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
            "gap_sharp": gap(sharp), "gap_blurred": gap(blurred), "gap_deblurred": gap(deblurred)}


def probe(M_D: nn.Module, recipe: dict, steps: int, shapes: list[str], noise_levels: list[float],
          seed: int = 0) -> list[dict]:
    """Every shape × every noise ceiling: train a fresh ``M_R`` (seeded) on ``recipe`` with that
    ceiling, then :func:`measure` it."""
    M_D = M_D.eval().requires_grad_(False)
    rows = []
    for shape in shapes:
        for sigma_max in noise_levels:
            seed_everything(seed)
            noisy = {**recipe, "sigma_range": [0.0, sigma_max]}
            M_R, started = SHAPES[shape](), time.time()
            train_reblurrer(M_D, M_R, noisy, steps)
            rows.append({"shape": shape, "sigma_max": sigma_max, "steps": steps,
                         "weights": sum(p.numel() for p in M_R.parameters()),
                         "seconds": time.time() - started, **measure(M_D, M_R, noisy)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.reblur_probe", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--deblurrer", default="reblur-l1-cpu", help="shipped checkpoint whose M_D is frozen")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    from .methods import load_shipped

    M_D = load_shipped(args.deblurrer, "reblur").deblurrer
    recipe = load_config("reblur", "cpu")["data"]
    rows = probe(M_D, recipe, args.steps, list(SHAPES), [recipe["sigma_range"][1], 0.0])
    print(f"{'M_R':<8}{'σ max':>6}{'weights':>9}{'L_blur':>9}{'identity':>10}{'ratio':>7}"
          f"{'gap sharp':>11}{'gap blurry':>11}{'gap deblurred':>14}")
    for r in rows:
        print(f"{r['shape']:<8}{r['sigma_max']:>6.2f}{r['weights']:>9,}{r['L_blur']:>9.5f}{r['L_blur_identity']:>10.5f}"
              f"{r['ratio']:>7.3f}{r['gap_sharp']:>11.5f}{r['gap_blurred']:>11.5f}{r['gap_deblurred']:>14.5f}")
    if args.json:
        out = {"deblurrer": args.deblurrer, "recipe": recipe, "rows": rows,
               "environment": {"torch": torch.__version__, "threads": torch.get_num_threads()}}
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
