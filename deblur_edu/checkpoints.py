"""Checkpoints with metadata: small, hash-verified, and loadable with ``weights_only=True``.

A model checkpoint is two files side by side:

- ``NAME.pt`` — the ``state_dict`` only (tensors), loaded with ``torch.load(weights_only=True)``
  so a file from anywhere can never run code;
- ``NAME.json`` — metadata: the model config (to rebuild it), the data recipe, the git
  commit, the training cost (wall time, device, steps), benchmark metrics, and the
  sha256 of ``NAME.pt``, verified on every load.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .data import sha256


def git_commit() -> str:
    """The repository's HEAD commit, or "" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def save_model(path: str | Path, model: nn.Module, meta: dict) -> Path:
    """Write ``path`` (.pt, weights) and its ``.json`` metadata (with the weights' sha256)."""
    path = Path(path).with_suffix(".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)
    meta = {**meta, "sha256": sha256(path), "weights": path.name}
    meta.setdefault("commit", git_commit())
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_metadata(path: str | Path) -> dict:
    path = Path(path).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint metadata {path} is missing; a checkpoint is NAME.pt + NAME.json "
                                f"written by deblur_edu.checkpoints.save_model (python -m deblur_edu.train).")
    return json.loads(path.read_text())


def load_model(path: str | Path, build: Callable[[dict], nn.Module], expected: dict | None = None,
               map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Verify the sha256, rebuild the model from its config with ``build``, load the weights.

    ``expected`` (optional) are config entries the caller relies on (e.g. ``{"channels": 1}``);
    any mismatch is an error, never a silent wrong model.
    """
    path = Path(path).with_suffix(".pt")
    meta = load_metadata(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint weights {path} are missing (metadata found).")
    actual = sha256(path)
    if actual != meta.get("sha256"):
        raise ValueError(f"checkpoint {path} does not match its recorded sha256 "
                         f"({actual[:12]}… vs {str(meta.get('sha256'))[:12]}…): the file is corrupt or was replaced.")
    for key, value in (expected or {}).items():
        if meta["config"]["model"].get(key) != value:
            raise ValueError(f"checkpoint {path} has model {key}={meta['config']['model'].get(key)!r}, "
                             f"but {value!r} is required.")
    model = build(meta["config"]["model"])
    state = torch.load(path, map_location=map_location, weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not fit the model its config describes: {err}") from err
    return model, meta


def write_metrics(checkpoint: str | Path, metrics: dict) -> dict:
    """Set the checkpoint's metadata ``metrics`` (``NAME.json`` beside ``NAME.pt``) and return the
    metadata. The weights (and so their sha256) are untouched."""
    meta_path = Path(checkpoint).with_suffix(".json")
    meta = load_metadata(meta_path)
    meta["metrics"] = metrics
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def record_metrics(checkpoint: str | Path, bench_json: str | Path, method: str) -> dict:
    """Copy ``method``'s rows of a benchmark JSON into the checkpoint's metadata ``metrics``.

    The weights (and so their sha256) are untouched; the metrics say where they came from.
    """
    out = json.loads(Path(bench_json).read_text())
    rows = [r for r in out["results"] if r["method"] == method]
    if not rows:
        raise ValueError(f"{bench_json} has no results for method {method!r}.")
    return write_metrics(checkpoint, {
        "benchmark": {f"{r['boundary']} sigma={r['sigma']:g}": {k: r[k] for k in ("psnr", "ssim", "seconds_per_image")}
                      for r in rows},
        "source": str(bench_json),
        "environment": {k: out["environment"].get(k) for k in ("device", "cpu", "torch", "commit", "split")},
    })


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(prog="python -m deblur_edu.checkpoints",
                                description="record benchmark metrics in a checkpoint's metadata")
    p.add_argument("checkpoint")
    p.add_argument("bench_json")
    p.add_argument("--method", required=True)
    a = p.parse_args()
    print(json.dumps(record_metrics(a.checkpoint, a.bench_json, a.method)["metrics"], indent=2))
