"""The shipped checkpoints: load one by name, and start a training run from parts of others.

:func:`pretrained` is the one way a chapter, an assignment, the benchmark or a user loads a
shipped model: ``pretrained("rgdn-cpu", device="cuda")``. It reads the checkpoint's metadata
(verified: weights and config), rebuilds the model its config describes (:mod:`.registry`) and
loads the weights — a new model each call, owned by the caller, reading no other checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .checkpoints import load_metadata, load_model
from .registry import WARM_STARTS, spec

#: the shipped checkpoints, NAME.pt + NAME.json (recipes in the Makefile)
WEIGHTS_DIR = Path(__file__).with_name("weights")


def checkpoint_path(name: str) -> Path:
    """``WEIGHTS_DIR/NAME.pt`` of a shipped checkpoint, or the path itself for NAME.pt elsewhere."""
    path = Path(name)
    if path.suffix == ".pt" or "/" in name or "\\" in name:
        return path.with_suffix(".pt")
    return WEIGHTS_DIR / f"{name}.pt"


def available(name: str) -> bool:
    """Whether the checkpoint ``name`` is there (its metadata file exists)."""
    return checkpoint_path(name).with_suffix(".json").is_file()


def metadata(name: str) -> dict:
    """The verified metadata of a checkpoint (config, data recipe, training cost, metrics)."""
    return load_metadata(checkpoint_path(name))


def pretrained(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """A shipped (or any) checkpoint's model on ``device``, in eval mode: a fresh object each call.

    Example:
        >>> model = pretrained("rgdn-cpu")
        >>> model.training, sum(p.numel() for p in model.parameters()) > 0
        (False, True)
    """
    path = checkpoint_path(name)
    if not path.with_suffix(".json").is_file():
        raise FileNotFoundError(
            f"the checkpoint {path} is missing. Shipped ones come with the package; each one's recipe is a Makefile "
            f"target (make denoiser-checkpoint, rgdn-checkpoint, deq-checkpoints, reblur-checkpoints, "
            f"adarevd-checkpoint): python -m deblur_edu.train MODEL --config cpu, then runs/<run>/model.pt and "
            f"model.json copied to {WEIGHTS_DIR}/{name}.*")
    meta = load_metadata(path)
    model, _ = load_model(path, spec(meta["model_name"]).build, map_location=device)
    return model.to(device).eval()


def part(model: nn.Module, dotted: str) -> nn.Module | None:
    """``model.a.b`` for ``dotted = "a.b"``; the model itself for ``""``."""
    for attr in filter(None, dotted.split(".")):
        model = getattr(model, attr)
    return model


#: what a model's config must set to have the part a warm start copies into (the error's hint)
WARM_START_NEEDS = {"reblur": "set reblur_weight > 0 or reblurrer=True", "rgdn": "set prior: denoiser",
                    "deq": "set form: hqs", "feedforward": "set prior: unet"}


def warm_start(model_name: str, model: nn.Module, cfg: dict) -> list[str]:
    """Copy into ``model`` the parts its config names (:data:`~.registry.WARM_STARTS`): e.g. the
    deblurrer of ``deblurrer_from: reblur-l1-cpu``. Called when a training run starts; returns
    what was copied, for the log. The architectures must agree (a clear error otherwise)."""
    done = []
    for key, (target, source) in WARM_STARTS.get(model_name, {}).items():
        name = cfg.get(key)
        if name is None:
            continue
        mine = part(model, target)
        if mine is None:
            raise ValueError(f"{key}: {name} needs this model's {target}, which its config leaves out "
                             f"({WARM_START_NEEDS.get(model_name, 'see the model class')}).")
        theirs = part(pretrained(name), source)
        if theirs is None:
            raise ValueError(f"{key}: the checkpoint {name} has no {source}; pick one that trained it.")
        try:
            mine.load_state_dict(theirs.state_dict())
        except RuntimeError as err:
            raise ValueError(f"{key}: the {source} of the checkpoint {name} does not fit this config's {target} "
                             f"(width, levels, blocks, input channels — two_stage: true for a two-stage deblurrer's U-Net): "
                             f"make them agree.\n{err}") from None
        done.append(f"{target} from {name}")
    return done


def built_on(name: str) -> list[str]:
    """Every checkpoint ``name`` was started from, directly or through others (named by the
    warm-start keys of the configs), each once: what its training cost includes.

    Example:
        >>> built_on("reblur-cpu")
        ['reblur-module-cpu', 'blind-refiner-cpu']
    """
    meta = metadata(name)
    keys = WARM_STARTS.get(meta["model_name"], {})
    found: list[str] = []
    for base in (meta["config"]["model"].get(key) for key in keys):
        for b in ([base, *built_on(base)] if base else []):
            if b not in found:
                found.append(b)
    return found
