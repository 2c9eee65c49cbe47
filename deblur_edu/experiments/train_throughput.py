r"""Training throughput: steps per second of the one training loop, per model, as it really trains.

    python -m deblur_edu.experiments.train_throughput [--runs rgdn:denoiser-full,deq:hqs-full]
        [--batch 16] [--patch 128] [--steps 20] [--device cuda] [--json OUT]

Each run is :func:`deblur_edu.train.train` on its preset, in a temporary folder, with the batch and
patch set as given and validation off: the synthesis on the training device, the forward pass, the
loss, the backward pass and the optimiser, exactly as ``python -m deblur_edu.train`` does. The loop
logs (and so waits for the device) only after ``--steps`` warm-up steps and after ``--steps`` more;
the throughput is the second stretch's steps over its wall time. A GPU that waits on the host shows
up here as a low figure (issue targets on an H200 at batch 16 × 128²: ``rgdn`` ≥ 20 steps/s,
``deq`` ≥ 5 steps/s).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import torch

from ..cli import positive_int, user_errors
from ..runtime import pick_device, provenance, write_json
from ..train import load_config, train

DEFAULT_RUNS = "rgdn:denoiser-full,deq:hqs-full"


def parse_runs(text: str) -> list[tuple[str, str]]:
    """``"rgdn:denoiser-full,deq:hqs-full"`` → ``[("rgdn", "denoiser-full"), ("deq", "hqs-full")]``.

    Example:
        >>> parse_runs("rgdn:denoiser-full, deq:hqs-full")
        [('rgdn', 'denoiser-full'), ('deq', 'hqs-full')]
    """
    runs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        model, sep, preset = item.partition(":")
        if not sep or not model or not preset:
            raise argparse.ArgumentTypeError(f"--runs takes MODEL:PRESET pairs separated by commas (e.g. {DEFAULT_RUNS}); got {item!r}.")
        runs.append((model, preset))
    if not runs:
        raise argparse.ArgumentTypeError(f"--runs names no run; e.g. {DEFAULT_RUNS}.")
    return runs


def measure(model: str, preset: str, batch: int, patch: int, steps: int, device: torch.device) -> dict:
    """Steps per second of ``model`` trained from ``preset`` at ``batch`` × ``patch``² (see the module docstring)."""
    cfg = copy.deepcopy(load_config(model, preset))
    cfg["train"].update(batch_size=batch, log_every=steps, ckpt_every=10**9, val_every=None)
    cfg["train"]["steps"] = max(cfg["train"]["steps"], 2 * steps)
    cfg["data"]["patch"] = patch
    with tempfile.TemporaryDirectory() as folder:
        train(model, cfg, Path(folder) / "run", device=str(device), progress=False, stop_after=2 * steps)
        log = [json.loads(line) for line in (Path(folder) / "run" / "log.jsonl").read_text().splitlines()]
    seconds = {r["step"]: r["seconds"] for r in log}
    elapsed = seconds[2 * steps] - seconds[steps]
    return {"model": model, "preset": preset, "batch": batch, "patch": patch, "amp": bool(cfg["train"].get("amp")),
            "measured_steps": steps, "seconds": elapsed, "steps_per_second": steps / elapsed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.train_throughput",
                                description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=parse_runs, default=parse_runs(DEFAULT_RUNS), help=f"MODEL:PRESET,… ({DEFAULT_RUNS})")
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--patch", type=positive_int, default=128)
    p.add_argument("--steps", type=positive_int, default=20, help="warm-up steps, then as many measured")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    with user_errors(p):
        device = pick_device(args.device)
        for model, preset in args.runs:
            load_config(model, preset)  # a wrong name fails here, not after the first run
    rows = []
    print(f"{'run':28s} {'steps/s':>8s}")
    for model, preset in args.runs:
        row = measure(model, preset, args.batch, args.patch, args.steps, device)
        rows.append(row)
        print(f"{model + ':' + preset:28s} {row['steps_per_second']:8.2f}", flush=True)
    if args.json:
        write_json(args.json, {"settings": {k: v for k, v in vars(args).items() if k not in ("json", "runs")}
                               | {"runs": [f"{m}:{c}" for m, c in args.runs], "device": str(device)},
                               "rows": rows, "environment": provenance(device, command=" ".join(sys.argv))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
