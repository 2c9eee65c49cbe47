"""Checkpoints with metadata: small, hash-verified, and loadable with ``weights_only=True``.

A model checkpoint is two files side by side:

- ``NAME.pt`` — the ``state_dict`` only (tensors), loaded with ``torch.load(weights_only=True)``
  so a file from anywhere can never run code;
- ``NAME.json`` — metadata: the model config (to rebuild it), the data recipe, the git
  commit, the training cost (wall time, device, steps), benchmark metrics, the sha256 of
  ``NAME.pt`` and the sha256 of the config (``config_sha256``), both verified on every
  load: neither the weights nor the settings the model is rebuilt from (its ``steps``,
  ``tol``, ``max_iter``, …) can change without an error.

A checkpoint written before config hashes existed is re-signed, after checking that its
config is the one it was trained with, by ``python -m deblur_edu.zoo.checkpoints sign NAME.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..data import sha256
from ..runtime import git_commit


def config_sha256(meta: dict) -> str:
    """sha256 of what rebuilds the model — ``model_name`` and ``config`` — as canonical JSON
    (sorted keys, no spaces), so the same settings always give the same digest.

    Example:
        >>> a = config_sha256({"model_name": "rgdn", "config": {"model": {"steps": 8, "features": 16}}})
        >>> b = config_sha256({"model_name": "rgdn", "config": {"model": {"features": 16, "steps": 8}}})
        >>> a == b, a == config_sha256({"model_name": "rgdn", "config": {"model": {"steps": 9, "features": 16}}})
        (True, False)
    """
    canonical = json.dumps({"model_name": meta.get("model_name"), "config": meta.get("config")},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def save_model(path: str | Path, model: nn.Module, meta: dict) -> Path:
    """Write ``path`` (.pt, weights) and its ``.json`` metadata (with the sha256 of the weights
    and of the config)."""
    path = Path(path).with_suffix(".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)
    meta = {**meta, "sha256": sha256(path), "config_sha256": config_sha256(meta), "weights": path.name}
    meta.setdefault("commit", git_commit())
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_metadata(path: str | Path) -> dict:
    """``NAME.json`` parsed, with an error naming the file when it is missing or not a checkpoint's
    metadata (not JSON, or without a ``config`` holding a ``model`` section). Not verified."""
    path = Path(path).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint metadata {path} is missing; a checkpoint is NAME.pt + NAME.json "
                                f"written by deblur_edu.zoo.checkpoints.save_model (python -m deblur_edu.train).")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint metadata {path} is not valid JSON ({err}); restore it from the run "
                         f"folder's model.json or retrain.") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) \
            or not isinstance(meta["config"].get("model"), dict):
        raise ValueError(f"checkpoint metadata {path} has no config with a 'model' section, so the model cannot be "
                         f"rebuilt from it; restore it from the run folder's model.json or retrain.")
    return meta


def load_metadata(path: str | Path) -> dict:
    """``NAME.json`` parsed and its config verified against ``config_sha256`` (see the module
    docstring): a changed config is refused, never used."""
    meta = read_metadata(path)
    path = Path(path).with_suffix(".json")
    recorded = meta.get("config_sha256")
    if recorded is None:
        raise ValueError(f"checkpoint metadata {path} has no config_sha256 (written before config hashes); if its "
                         f"config is the one it was trained with, sign it: python -m deblur_edu.zoo.checkpoints sign {path}")
    if recorded != config_sha256(meta):
        raise ValueError(f"the config in {path} is not the one the weights were trained with (its sha256 "
                         f"{config_sha256(meta)[:12]}… differs from the recorded {str(recorded)[:12]}…): settings such "
                         f"as steps, tol or max_iter were edited. Restore the file, or retrain with the new config.")
    return meta


def sign_config(path: str | Path) -> dict:
    """Record ``config_sha256`` in a checkpoint's metadata written before config hashes existed.

    Only for a config known to be the one the weights were trained with (the shipped
    checkpoints were re-signed so, their configs compared with the presets and the run
    folders): signing vouches for the config. The weights' own sha256 is checked first.
    """
    meta = read_metadata(path)
    weights = Path(path).with_suffix(".pt")
    if sha256(weights) != meta.get("sha256"):
        raise ValueError(f"{weights} does not match its recorded sha256; not signing.")
    meta["config_sha256"] = config_sha256(meta)
    Path(path).with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


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


def main(argv: list[str] | None = None) -> int:
    """``python -m deblur_edu.zoo.checkpoints CHECKPOINT BENCH_JSON --method NAME`` records metrics;
    ``python -m deblur_edu.zoo.checkpoints sign NAME.json [...]`` records config hashes."""
    import argparse
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sign"]:
        p = argparse.ArgumentParser(prog="python -m deblur_edu.zoo.checkpoints sign",
                                    description="record the config sha256 of checkpoints written before config hashes")
        p.add_argument("paths", nargs="+", help="NAME.json (or NAME.pt) of each checkpoint")
        a = p.parse_args(argv[1:])
        for path in a.paths:
            try:
                print(f"{path}: config_sha256 {sign_config(path)['config_sha256']}")
            except (OSError, ValueError) as err:
                p.error(str(err))
        return 0
    p = argparse.ArgumentParser(prog="python -m deblur_edu.zoo.checkpoints",
                                description="record benchmark metrics in a checkpoint's metadata "
                                            "(or: python -m deblur_edu.zoo.checkpoints sign NAME.json ...)")
    p.add_argument("checkpoint")
    p.add_argument("bench_json")
    p.add_argument("--method", required=True)
    a = p.parse_args(argv)
    try:
        print(json.dumps(record_metrics(a.checkpoint, a.bench_json, a.method)["metrics"], indent=2))
    except (OSError, ValueError) as err:
        p.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
