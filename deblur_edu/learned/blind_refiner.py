r"""A blind deblurrer in two stages: a classical kernel estimate and deconvolution, then a U-Net.

A U-Net asked to undo a 31-px camera shake from ``y`` alone must, in effect, find the kernel
with its receptive field and invert it with its weights; at the sizes a CPU trains in an hour
it learns little of either (chapter 5's pilot recipe, ``reblur-photos-l1``, gains under a dB).
Classical blind deconvolution (:mod:`deblur_edu.classical.blind_deconvolution`) already does
the part that is physics — estimate ``k̂`` from y's edges, deconvolve with TV — and leaves
the part that is image statistics: TV's flat patches and staircases, ringing where ``k̂`` is
wrong. So the network is asked for that part only:

    x̂₀ = TV-deconvolve(y, k̂, σ̂),  k̂ = estimate_kernel(y),  σ̂ = estimate_noise_level(y)
    x̂  = x̂₀ + U([y, x̂₀])

``U`` sees both the blurry image and the first estimate (two input channels), so where
``x̂₀`` is worse than ``y`` it can lean on ``y``. This is the shape of learned blind pipelines
that keep an explicit kernel (Schuler, Hirsch, Harmeling & Schölkopf, "Learning to deblur",
TPAMI 2016; Kaufman & Fattal, "Deblurring using analysis-synthesis networks pair", CVPR 2020)
and of restoration networks that refine a classical estimate (e.g. Dong, Roth & Schiele,
"Deep Wiener deconvolution", NeurIPS 2020).

The first stage is not differentiated and costs seconds per 256² image on a CPU, so
training reads it from a bank computed once (:mod:`deblur_edu.first_stage`), and the model is
handed ``x̂₀``: the benchmark's ``blind-refiner`` method runs its ``blind-tv`` first
(:mod:`deblur_edu.bench.methods`), which holds TV's weights tuned on the tune split.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_channels, check_image, check_model_dtype
from .unet import UNet


class BlindRefiner(nn.Module):
    """``x̂ = x̂₀ + U([y, x̂₀])`` with ``x̂₀`` blind TV (see the module docstring).

    Args:
        width, levels, blocks: the U-Net's (:class:`~deblur_edu.learned.unet.UNet`).

    Example:
        >>> net = BlindRefiner(width=8, levels=2)
        >>> y = torch.rand(2, 1, 40, 40)
        >>> net(y, first=y).shape  # first: x̂₀ computed beforehand (training reads it from a bank)
        torch.Size([2, 1, 40, 40])
    """

    def __init__(self, width: int = 16, levels: int = 3, blocks: int = 1):
        super().__init__()
        self.channels = 1
        self.unet = UNet(channels=1, width=width, levels=levels, blocks=blocks, in_channels=2)

    def refine(self, y: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """The second stage alone: ``x̂₀ + U([y, x̂₀])``."""
        return first + self.unet.residual(torch.cat([y, first], dim=1))

    def forward(self, y: torch.Tensor, k: torch.Tensor | None = None,
                 first: torch.Tensor | None = None) -> torch.Tensor:
        """Correct the first estimate ``first`` (x̂₀) of the blurry ``y`` (both B, 1, H, W).
        ``k`` is accepted and ignored: the model is blind."""
        y = check_image(y, "y")
        check_channels(y, 1, "BlindRefiner")
        check_model_dtype(y, self, "BlindRefiner")
        if first is None:
            raise ValueError("BlindRefiner corrects a first estimate: pass first=x̂₀, blind TV's estimate of y, e.g. "
                             "deblur_edu.bench.methods.get_method('blind-tv')(y, None, 0.0), or run both stages "
                             "as get_method('blind-refiner')(y, None, 0.0).")
        if first.shape != y.shape:
            raise ValueError(f"first must have y's shape {tuple(y.shape)}, got {tuple(first.shape)}.")
        return self.refine(y, first)
