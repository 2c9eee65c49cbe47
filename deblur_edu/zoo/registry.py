"""Every trainable model of the book by name: how to build it from a config, what it is trained
to minimise, and what validation scores.

A config's ``model`` section holds the constructor's arguments — the architecture — plus, for
the models that start from another shipped checkpoint, the names of those checkpoints
(:data:`WARM_STARTS`). Those names are used once, when training starts
(:func:`deblur_edu.zoo.shipped.warm_start`); building a model never reads another
checkpoint, so a checkpoint alone (``NAME.pt`` + ``NAME.json``) rebuilds its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..learned import DEQ, RGDN, AdaRevD, ReblurDeblurrer, TikhonovCNN
from ..learned.blind_refiner import BlindRefiner
from ..learned.denoiser import GaussianDenoiser


# ----- what a model is trained to minimise -----------------------------------------------------
#: the non-blind deblurrers: told the kernel *and* the noise level σ, as classical deconvolution is
NON_BLIND = (RGDN, DEQ, TikhonovCNN)


def deblurred(model: nn.Module, batch: dict) -> torch.Tensor:
    """The estimate a deblurring model makes of a batch: ``model(y, k, σ)`` for a non-blind model
    (:data:`NON_BLIND`; each says with ``uses_sigma`` whether it uses σ), ``model(y, k)`` otherwise."""
    if isinstance(getattr(model, "module", model), NON_BLIND):  # getattr: a DDP-wrapped model
        return model(batch["blurred"], batch["kernel"], batch["sigma"])
    if "first" in batch:  # a second stage, handed the first stage's estimate (e.g. chapter 5's two-stage pair)
        return refined(model, batch)
    return model(batch["blurred"], batch["kernel"])


def refined(model: nn.Module, batch: dict) -> torch.Tensor:
    """The estimate of a second stage trained on a first stage's outputs (:mod:`deblur_edu.first_stage`):
    ``model(y, first=x̂₀)``."""
    return model(batch["blurred"], first=batch["first"])


def refinement_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Mean absolute error of the refined estimate (L1, as chapter 5's deblurrers)."""
    return torch.mean((refined(model, batch) - batch["sharp"]).abs())


def denoised(model: nn.Module, batch: dict) -> torch.Tensor:
    """The estimate a denoiser makes of a batch: ``model(noisy, σ)``."""
    return model(batch["noisy"], batch["sigma"])


def recursive_supervision_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Mean over steps t of MSE(x_t, x): every step's output is supervised (RGDN)."""
    outputs = model(batch["blurred"], batch["kernel"], batch["sigma"], return_all=True)
    return torch.stack([torch.mean((o - batch["sharp"]) ** 2) for o in outputs]).mean()


def output_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """MSE of the model's output (a DEQ has one output: its equilibrium)."""
    return torch.mean((deblurred(model, batch) - batch["sharp"]) ** 2)


def self_computed_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """The loss the model's forward computes when given the sharp images (chapter 5's L1 +
    reblurring losses, chapter 6's multi-decoder loss): a model whose loss needs more than
    ``model(y, k)`` computes it itself, as DistributedDataParallel requires."""
    if "first" in batch:  # a two-stage deblurrer's batch from a first stage's bank: no kernel, x̂₀ instead
        # a reblurring module's target, when the bank gives it (data.reblur_target: noise-free)
        extra = {"reblur_target": batch["blurred_clean"]} if "blurred_clean" in batch else {}
        return model(batch["blurred"], sharp=batch["sharp"], first=batch["first"], **extra)
    return model(batch["blurred"], batch["kernel"], sharp=batch["sharp"])


def denoising_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Mean absolute error of each denoised image relative to its noise level σ, averaged.

    L1 (DRUNet's loss; it trains restoration networks faster than MSE, Zhao et al., IEEE TCI
    2017), divided by σ so that every noise level weighs alike: an error of 0.001 matters at
    σ = 0.01 as an error of 0.01 does at σ = 0.1 — what plug-and-play's geometric schedule needs.
    """
    error = (denoised(model, batch) - batch["sharp"]).abs().mean(dim=(1, 2, 3))
    return torch.mean(error / batch["sigma"])


# ----- the registry --------------------------------------------------------------------------
#: config keys naming a shipped checkpoint a model starts its training from:
#: model name → {key: (this model's part, that checkpoint's part)} (parts as dotted attribute paths)
WARM_STARTS: dict[str, dict[str, tuple[str, str]]] = {
    "reblur": {"deblurrer_from": ("deblurrer", "deblurrer"), "reblurrer_from": ("reblurrer", "reblurrer"),
               "refiner_from": ("deblurrer", "")},  # the two-stage pair's M_D: a blind-refiner checkpoint, whole
    "adarevd": {"encoder": ("decoder.encoder", "deblurrer"),  # an end-to-end U-Net's (reblur-l1-cpu)
                "refiner_from": ("decoder.encoder", "unet")},  # a two-stage deblurrer's U-Net (blind-refiner-cpu)
    "deq": {"denoiser_from": ("denoiser", "")},  # the hqs form's denoiser: chapter 2's, whole
    "feedforward": {"denoiser_from": ("denoiser", "")},  # the unet prior's, likewise
    "rgdn": {"denoiser_from": ("denoiser", "")},  # the denoiser prior's, likewise
}


@dataclass
class ModelSpec:
    """A trainable model: its class, its training loss, and the estimate validation scores."""

    cls: type[nn.Module]
    loss: Callable[[nn.Module, dict], torch.Tensor]
    estimate: Callable[[nn.Module, dict], torch.Tensor] = deblurred
    name: str = ""

    def build(self, cfg: dict) -> nn.Module:
        """The model of a config's ``model`` section, freshly initialised (warm-start names ignored)."""
        return self.cls(**architecture(self.name, cfg))


MODELS: dict[str, ModelSpec] = {
    name: ModelSpec(cls, loss, estimate, name)
    for name, cls, loss, estimate in [
        ("rgdn", RGDN, recursive_supervision_loss, deblurred),
        ("deq", DEQ, output_loss, deblurred),
        ("feedforward", TikhonovCNN, output_loss, deblurred),
        ("reblur", ReblurDeblurrer, self_computed_loss, deblurred),
        ("adarevd", AdaRevD, self_computed_loss, deblurred),
        ("denoiser", GaussianDenoiser, denoising_loss, denoised),
        ("blind-refiner", BlindRefiner, refinement_loss, refined),
    ]
}


def architecture(model_name: str, cfg: dict) -> dict:
    """A ``model`` config without its warm-start names: the constructor's arguments."""
    return {k: v for k, v in cfg.items() if k not in WARM_STARTS.get(model_name, {})}


def spec(model_name: str) -> ModelSpec:
    """The registry entry of ``model_name``, with a clear error for an unknown name."""
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose from {sorted(MODELS)}.")
    return MODELS[model_name]
