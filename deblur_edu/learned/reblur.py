r"""Reblurring losses — "Clean images are hard to reblur".

Nah, Son, Lee & Lee, "Clean Images are Hard to Reblur: Exploiting the Ill-Posed Inverse Task
for Dynamic Scene Deblurring", ICLR 2022 (arXiv 2104.12665).

An L1/L2-trained deblurrer ``M_D`` regresses to the mean of the sharp images compatible
with ``B``: its output ``L̂ = M_D(B)`` keeps some blur. A *reblurring module* ``M_R`` (a
small ResNet, ``M_R(x) = x + body(x)``) learns to **amplify the blur that remains**, back
to the blurry input, while leaving clean images unchanged:

    L_blur  = ‖M_R(L̂) − B‖₁                        amplify what is left
    L_sharp = ‖M_R(M_D(S)) − M_D(S)‖₁               a deblurred *sharp* image stays put

A clean image is hard to reblur, so ``M_R`` measures the blur left in ``L̂`` — and gives
the deblurrer two new losses:

    supervised       L_R  = ‖M_R(L̂) − M_R(S)‖₁      (``M_R`` frozen; ``M_R(S)`` a fixed target)
    self-supervised  L_R' = ‖M_R(L̂) − sg(L̂)‖₁       (no sharp image: test-time adaptation)

``sg`` stops the gradient. The supervised loss is added to L1 during training; the
self-supervised one drives a few gradient steps on ``M_D`` per test image with ``M_R``
frozen (:func:`adapt_at_test_time`).

**Training schedule** (``schedule=``). The paper alternates updates of ``M_D`` and ``M_R``.
``"alternate"`` does exactly that: odd training steps update ``M_R`` alone, even ones ``M_D``
alone. ``"joint"`` (the default, half the cost per update of both) updates both in one
optimiser step from one loss, with the gradients routed so that each network only sees its
own objective: ``M_R`` is frozen inside the deblurrer's loss, and the deblurred images are
detached inside ``M_R``'s loss (:func:`reblur_training_loss`). The two parameter sets are
disjoint, so this is the alternating scheme with both halves computed at the same iterate.

**Two-stage deblurrer** (``two_stage=True``): ``M_D`` is chapter 5's
:class:`~.blind_refiner.BlindRefiner`, ``L̂ = x̂₀ + U([B, x̂₀])`` with ``x̂₀`` blind TV's estimate, read
from a bank in training (:mod:`deblur_edu.first_stage`). Its deblurred sharp image is ``M_D(S) = S + U([S, S])``:
the first stage of a sharp image is the image itself.

**In stages** (``frozen=``; a config's ``deblurrer_from`` / ``reblurrer_from`` / ``refiner_from`` start a run
from a shipped checkpoint's networks, :mod:`deblur_edu.zoo.shipped`). Trained jointly on chapter 5's
CPU budget, ``M_R`` stays near the identity while the deblurrer changes under it, and the deblurrer's loss falls
back to L1. The chapter therefore trains ``M_R`` alone against a finished, frozen deblurrer first
(:mod:`deblur_edu.experiments.ch5_reblur_eval` measures whether it learned to reblur), then fine-tunes that
deblurrer with ``M_R`` frozen as a fixed critic.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import MAX_PLAUSIBLE_VALUE, check_image, check_iterations, check_positive
from .blind_refiner import BlindRefiner
from .unet import ResBlock, UNet

ADAPT_PARAMETERS = ("all", "decoder", "head")
SCHEDULES = ("joint", "alternate")
REBLURRER_SHAPES = ("resnet", "unet")
PARTS = ("deblurrer", "reblurrer")


class Reblurrer(nn.Module):
    """``M_R(x) = x + body(x)``, body = conv3×3 → ``blocks`` residual blocks → conv3×3.

    Example:
        >>> M_R = Reblurrer(features=8)
        >>> M_R(torch.rand(2, 1, 16, 16)).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(self, channels: int = 1, features: int = 32, blocks: int = 2):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, features, 3, padding=1),
                                  *[ResBlock(features) for _ in range(blocks)],
                                  nn.Conv2d(features, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, ``module``'s parameters receive no gradient (restored afterwards)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def reblur_module_loss(M_R: nn.Module, deblurred: torch.Tensor, blurred: torch.Tensor,
                       deblurred_sharp: torch.Tensor, sharp_weight: float = 1.0) -> torch.Tensor:
    """``L_blur + w·L_sharp = ‖M_R(L̂) − B‖₁ + w‖M_R(M_D(S)) − M_D(S)‖₁`` — trains ``M_R`` only
    (both deblurred images are detached, and clamped to [0, 1]: ``M_R`` is handed images). The paper weighs the two terms equally (``w = 1``); a smaller
    ``w`` lets ``M_R`` blur whatever it sees, sharp images included."""
    deblurred, deblurred_sharp = deblurred.detach().clamp(0, 1), deblurred_sharp.detach().clamp(0, 1)  # images
    return F.l1_loss(M_R(deblurred), blurred) + sharp_weight * F.l1_loss(M_R(deblurred_sharp), deblurred_sharp)


def supervised_reblur_loss(M_R: nn.Module, deblurred: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
    """``‖M_R(L̂) − M_R(S)‖₁``: the blur ``M_R`` can still amplify in ``L̂``, compared with the
    (small) amount it finds in the sharp image. ``M_R(S)`` is a fixed target. ``M_R`` is handed images:
    ``L̂`` clamped to [0, 1] (pixels outside get no gradient from this term; L1 still pulls them in)."""
    with torch.no_grad():
        target = M_R(sharp)
    return F.l1_loss(M_R(deblurred.clamp(0, 1)), target)


def self_supervised_reblur_loss(M_R: nn.Module, deblurred: torch.Tensor) -> torch.Tensor:
    """``‖M_R(L̂) − sg(L̂)‖₁``: how much ``M_R`` changes ``L̂`` — zero for a clean image. Unlike the training
    losses, ``L̂`` is not clamped here: adaptation moves every pixel, and its guard stops it when the output leaves
    the range of an image (:func:`adapt_at_test_time`)."""
    return F.l1_loss(M_R(deblurred), deblurred.detach())


def build_reblurrer(shape: str, channels: int, features: int, blocks: int, levels: int = 2) -> nn.Module:
    """``M_R`` of the chapter's shape (``resnet``: :class:`Reblurrer`) or a :class:`~.unet.UNet` of
    ``levels`` levels (``unet``: already of the form ``z + U(z)``, with a window wider than the blur;
    each level doubles it)."""
    if shape not in REBLURRER_SHAPES:
        raise ValueError(f"unknown reblurrer shape {shape!r}; choose one of {REBLURRER_SHAPES}.")
    if shape == "unet":
        return UNet(channels, features, levels=levels, blocks=blocks)
    return Reblurrer(channels, features, blocks)


class ReblurDeblurrer(nn.Module):
    """The pair trained together: the blind deblurrer ``M_D`` (a :class:`~.unet.UNet`, or with
    ``two_stage`` a :class:`~.blind_refiner.BlindRefiner`) and,
    when ``reblur_weight > 0``, the reblurring module ``M_R``. Calling it deblurs.

    Args:
        channels, width, levels, blocks: the U-Net.
        two_stage: ``M_D`` corrects a first estimate ``x̂₀`` (pass ``first=`` when calling; one channel).
        reblur_weight: weight of the supervised reblurring loss (0: the deblurrer learns from L1 only).
        reblurrer: train ``M_R`` too (default: when ``reblur_weight > 0``). With
            ``reblur_weight = 0`` and ``reblurrer=True``, ``M_R`` learns beside an L1 deblurrer
            without influencing it — an independent judge for evaluation.
        reblur_features, reblur_blocks, reblur_levels: ``M_R``'s size (levels: of the ``unet`` shape).
        schedule: ``"joint"`` or ``"alternate"`` (module docstring).
        reblurrer_shape: ``"resnet"`` (the paper's) or ``"unet"`` (:func:`build_reblurrer`).
        frozen: ``"deblurrer"`` or ``"reblurrer"``: that network keeps its weights. A frozen
            ``M_D`` trains ``M_R`` alone against a finished deblurrer; a frozen ``M_R``
            is a fixed critic for the deblurrer's supervised reblurring loss.

    Example:
        >>> pair = ReblurDeblurrer(width=4, levels=1, reblur_weight=1.0, reblur_features=4)
        >>> y, s = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
        >>> pair(y).shape                      # deblur
        torch.Size([2, 1, 16, 16])
        >>> pair(y, sharp=s).backward()        # the training loss of both networks
    """

    def __init__(self, channels: int = 1, width: int = 16, levels: int = 2, blocks: int = 1,
                 reblur_weight: float = 0.0, reblurrer: bool | None = None, reblur_features: int = 32,
                 reblur_blocks: int = 2, schedule: str = "joint", reblurrer_shape: str = "resnet",
                 frozen: str | None = None, two_stage: bool = False, reblur_levels: int = 2):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}.")
        if frozen is not None and frozen not in PARTS:
            raise ValueError(f"frozen must be None or one of {PARTS}, got {frozen!r}.")
        if reblur_weight < 0:
            raise ValueError(f"reblur_weight must be >= 0, got {reblur_weight}.")
        if reblurrer is False and reblur_weight > 0:
            raise ValueError("reblur_weight > 0 needs the reblurring module: leave reblurrer unset or True.")
        if two_stage and channels != 1:
            raise ValueError(f"two_stage=True corrects a grey first estimate: channels must be 1, got {channels}.")
        self.channels, self.reblur_weight, self.two_stage = channels, reblur_weight, two_stage
        self.deblurrer = BlindRefiner(width, levels, blocks) if two_stage else UNet(channels, width, levels, blocks)
        with_reblurrer = reblur_weight > 0 if reblurrer is None else reblurrer
        self.reblurrer = build_reblurrer(reblurrer_shape, channels, reblur_features, reblur_blocks,
                                         reblur_levels) if with_reblurrer else None
        if frozen is not None and self.reblurrer is None:
            raise ValueError(f"frozen={frozen!r} needs the reblurring module: set reblur_weight > 0 or reblurrer=True.")
        self.frozen = frozen
        if frozen is not None:
            getattr(self, frozen).requires_grad_(False)
        self.schedule = schedule
        if schedule == "alternate":
            if self.reblurrer is None:
                raise ValueError("schedule='alternate' alternates with the reblurring module: set reblur_weight > 0 "
                                 "or reblurrer=True.")
            if frozen is not None:
                raise ValueError("schedule='alternate' alternates two trained networks; with one frozen, use 'joint'.")
            self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # saved: --resume keeps the parity

    def deblur(self, y: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """``M_D(y)``, or ``M_D(y, x̂₀)`` for the two-stage deblurrer (which raises without ``first``)."""
        return self.deblurrer(y, first=first) if self.two_stage else self.deblurrer(y)

    def deblur_sharp(self, sharp: torch.Tensor) -> torch.Tensor:
        """``M_D(S)``: the deblurrer applied to a sharp image (for two stages, ``S`` is its own first estimate)."""
        return self.deblur(sharp, sharp if self.two_stage else None)

    def forward(self, y: torch.Tensor, k: torch.Tensor | None = None, sharp: torch.Tensor | None = None,
                first: torch.Tensor | None = None, reblur_target: torch.Tensor | None = None) -> torch.Tensor:
        """Deblur ``y`` (``k`` is ignored: blind; ``first``: the two-stage deblurrer's ``x̂₀``). Given the
        ``sharp`` images too, return the training loss instead (:func:`reblur_training_loss`; ``reblur_target``:
        what ``M_R`` rebuilds, default ``y``) — so that the training loop calls it through ``forward``, as
        DistributedDataParallel requires."""
        if sharp is None:
            return self.deblur(y, first)
        return reblur_training_loss(self, y, sharp, first, reblur_target)


def reblur_training_loss(model: ReblurDeblurrer, blurred: torch.Tensor, sharp: torch.Tensor,
                         first: torch.Tensor | None = None, reblur_target: torch.Tensor | None = None) -> torch.Tensor:
    """``‖L̂ − S‖₁ + w·L_R`` for ``M_D`` plus ``L_blur + L_sharp`` for ``M_R`` (see the module
    docstring for how one step updates both); with ``schedule="alternate"``, only one of the
    two, in turn (``M_R`` first); a ``frozen`` network's loss is left out. ``reblur_target``: the image
    ``M_R`` learns to rebuild in ``L_blur`` (default the blurry input; the same image without its noise,
    which no module can predict, gives it a cleaner signal)."""
    M_R = model.reblurrer
    if M_R is None:
        return F.l1_loss(model.deblur(blurred, first), sharp)
    train_D = train_R = True
    if model.schedule == "alternate":
        train_R = int(model.updates) % 2 == 0
        train_D = not train_R
        model.updates += 1
    train_D, train_R = train_D and model.frozen != "deblurrer", train_R and model.frozen != "reblurrer"
    loss = torch.zeros((), device=blurred.device)
    with torch.set_grad_enabled(train_D and torch.is_grad_enabled()):
        deblurred = model.deblur(blurred, first)
    if train_D:
        loss = loss + F.l1_loss(deblurred, sharp)
        if model.reblur_weight > 0:
            with frozen(M_R):
                loss = loss + model.reblur_weight * supervised_reblur_loss(M_R, deblurred, sharp)
    if train_R:
        with torch.no_grad():
            deblurred_sharp = model.deblur_sharp(sharp)
        target = blurred if reblur_target is None else reblur_target
        loss = loss + reblur_module_loss(M_R, deblurred, target, deblurred_sharp)
    return loss


@dataclass
class AdaptInfo:
    """What :func:`adapt_at_test_time` did: the self-supervised loss before each step, the step
    whose output was kept, and why it stopped."""

    losses: list[float] = field(default_factory=list)
    kept_step: int = 0
    stopped: str = "steps done"


def adapted_parameters(M_D: UNet | BlindRefiner, which: str) -> list[nn.Parameter]:
    """The parameters test-time adaptation may change: ``all``, the ``decoder`` (up-sampling,
    decoder stages and head) or the ``head`` only (of a two-stage deblurrer's U-Net)."""
    if which not in ADAPT_PARAMETERS:
        raise ValueError(f"unknown parameter set {which!r}; choose one of {ADAPT_PARAMETERS}.")
    if which == "all":
        return list(M_D.parameters())
    net = M_D.unet if isinstance(M_D, BlindRefiner) else M_D
    modules = [net.head] if which == "head" else [net.ups, net.decoders, net.head]
    return [p for m in modules for p in m.parameters()]


def adapt_at_test_time(M_D: UNet | BlindRefiner, M_R: nn.Module, y: torch.Tensor, steps: int = 5, lr: float = 1e-5,
                       parameters: str = "all", tolerance: float = 1.0,
                       first: torch.Tensor | None = None) -> tuple[torch.Tensor, AdaptInfo]:
    """Adapt a *copy* of ``M_D`` to the blurry images ``y`` with Adam on the self-supervised
    reblurring loss ``‖M_R(M_D(y)) − sg(M_D(y))‖₁``, ``M_R`` frozen.

    All images of ``y`` share the adapted weights: pass one image for per-image adaptation.
    A two-stage ``M_D`` (:class:`~.blind_refiner.BlindRefiner`) is handed its first estimate ``first``
    (fixed: only the second stage adapts).

    **What a step does.** Because of the stop-gradient, the update is not a descent step on
    the loss it measures: with ``M_R(z) = z + body(z)``, the gradient with respect to the
    output is ``(I + J_body)ᵀ sign(body(x̂))``, dominated by ``sign(body(x̂))``. The step
    moves ``x̂`` *against* what ``M_R`` would add — against the blur it would amplify —
    which sharpens it. The measured loss may rise a little on the way.

    **Guard.** The loss is measured before every step. When it is no longer finite, or exceeds
    ``(1 + tolerance)`` times its value before adaptation, or the output is no longer an image
    (non-finite, or beyond ``MAX_PLAUSIBLE_VALUE``), adaptation has diverged: it stops and
    returns the last output from before that point (at worst the unadapted one).

    Returns:
        the deblurred images of the kept step, and :class:`AdaptInfo`.
    """
    y = check_image(y, "y")
    check_iterations(steps, "steps")
    check_positive(lr, "lr")
    check_positive(tolerance, "tolerance")
    if isinstance(M_D, BlindRefiner) and first is None:
        raise ValueError("a two-stage deblurrer adapts on its first estimate too: pass first=x̂₀ (blind TV's estimate of y).")
    model = copy.deepcopy(M_D).train()
    optimiser = torch.optim.Adam(adapted_parameters(model, parameters), lr=lr)
    info, kept = AdaptInfo(), None
    with frozen(M_R):
        for step in range(steps + 1):
            x_hat = model(y) if first is None else model(y, first=first)
            peak = float(x_hat.detach().abs().amax())
            if not peak <= MAX_PLAUSIBLE_VALUE:  # NaN, Inf or far outside [0, 1]: no longer an image
                info.stopped = f"output diverged (values up to {peak:.3g}): kept the output from before"
                break
            loss = self_supervised_reblur_loss(M_R, x_hat)
            value = float(loss.detach())
            info.losses.append(value)
            if not torch.isfinite(loss) or value > (1 + tolerance) * info.losses[0]:
                info.stopped = "loss diverged: kept the output from before"
                break
            kept, info.kept_step = x_hat.detach(), step
            if step == steps:
                break
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    if kept is None:  # the unadapted output itself was no image: nothing better to return
        kept = x_hat.detach()
    return kept, info
