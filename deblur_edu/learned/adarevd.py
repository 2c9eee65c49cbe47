r"""AdaRevD in miniature: a frozen U-Net encoder, reversible sub-decoders and a classifier.

Mao, Li & Wang, "AdaRevD: Adaptive Patch Exiting Reversible Decoder Pushes the Limit of
Image Deblurring" (CVPR 2024) in three parts, each in its own module:

* :mod:`.reversible` — N sub-decoders on the frozen encoder's features, trained with
  activations recomputed in backward; estimate ``x̂_i = y + head_i(c_0)`` after each;
* :mod:`.patch_exit` — a classifier on the encoder's bottleneck that predicts a patch's
  degradation class (from the blurry patch's PSNR), and the class → exit mapping;
* this module — the two trained together by the one training loop, with the loss

    L = (1/N) Σ_i [ ‖x̂_i − x‖₁ + 0.01·mean|FFT(x̂_i) − FFT(x)| ]  +  w_c · CE(classifier(e_L), class(y, x))

The encoder is a trained blind deblurrer's, frozen, its decoder dropped (AdaRevD freezes a trained
UFPNet/NAFNet encoder). Chapter 6 uses chapter 5's two-stage deblurrer (``two_stage=True``; the
config's ``refiner_from: blind-refiner-cpu`` copies its U-Net in when training starts,
:mod:`deblur_edu.zoo.shipped`): the encoder reads ``[y, x̂₀]``, blind TV's estimate beside the blurry
image, and each sub-decoder corrects ``x̂₀``, as the refiner's own decoder does:

    x̂_i = x̂₀ + head_i(c_0)

(``two_stage=False``: an end-to-end U-Net's encoder, ``encoder: NAME``, and ``x̂_i = y + head_i(c_0)``.)
The degradation classes' thresholds are an argument, so that a training set's classes can be
chosen to be populated (the config says how they were chosen).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .patch_exit import THRESHOLDS, DegradationClassifier, degradation_class
from .reversible import ReversibleDecoder, multi_decoder_loss
from ..checks import check_channels, check_image, check_model_dtype
from .unet import UNet


class AdaRevD(nn.Module):
    """Reversible sub-decoders + degradation classifier on a frozen U-Net encoder.

    Args:
        encoder: the U-Net whose encoder is frozen (None: a fresh one of ``width``/``levels``/``blocks``).
        width, levels, blocks: that U-Net's architecture.
        columns, reversible, alpha_min, dropout: the :class:`~.reversible.ReversibleDecoder`.
        classifier_hidden: the classifier's hidden width.
        classifier_weight: ``w_c`` of the loss (module docstring).
        fft_weight: the FFT term's weight.
        two_stage: the encoder reads ``[y, x̂₀]`` and the estimates correct ``x̂₀`` (module docstring);
            every call then needs ``first=x̂₀``.
        thresholds: the degradation classes' PSNR thresholds in dB (:func:`~.patch_exit.degradation_class`).

    Calling it deblurs with every sub-decoder (the last estimate); with ``sharp`` it returns
    the training loss; :meth:`estimates` gives every sub-decoder's estimate.

    Example:
        >>> model = AdaRevD(width=4, levels=2, columns=2)
        >>> y, x = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
        >>> model(y).shape
        torch.Size([2, 1, 16, 16])
        >>> model(y, sharp=x).backward()
        >>> two = AdaRevD(width=4, levels=2, columns=2, two_stage=True)
        >>> two(y, first=y).shape    # first: x̂₀, e.g. blind TV's estimate of y
        torch.Size([2, 1, 16, 16])
    """

    def __init__(self, encoder: UNet | None = None, width: int = 16, levels: int = 3, blocks: int = 1,
                 columns: int = 4, reversible: bool = True, alpha_min: float = 0.1, dropout: float = 0.0,
                 classifier_hidden: int = 32, classifier_weight: float = 0.1, fft_weight: float = 0.01,
                 channels: int = 1, two_stage: bool = False, thresholds: Sequence[float] = THRESHOLDS):
        super().__init__()
        if channels != 1:
            raise ValueError(f"the encoders are grey-scale: channels must be 1, got {channels}.")
        if not thresholds or list(thresholds) != sorted(set(thresholds)):
            raise ValueError(f"thresholds must be increasing PSNRs in dB, at least one, got {list(thresholds)}.")
        self.channels, self.two_stage, self.thresholds = channels, two_stage, tuple(float(t) for t in thresholds)
        reads = 2 if two_stage else 1  # the encoder's input: [y, x̂₀] or y
        unet = encoder if encoder is not None else UNet(1, width, levels, blocks, in_channels=reads)
        if unet.stem.in_channels != reads:
            raise ValueError(f"the encoder reads {unet.stem.in_channels} image(s) but two_stage={two_stage} needs {reads}: "
                             f"a two-stage deblurrer's U-Net (BlindRefiner.unet) reads [y, x̂₀], an end-to-end one y.")
        self.decoder = ReversibleDecoder(unet, columns, reversible,
                                         alpha_min, dropout)
        self.classifier = DegradationClassifier(width * 2 ** levels, classes=len(self.thresholds) + 1,
                                                hidden=classifier_hidden)
        self.classifier_weight, self.fft_weight = classifier_weight, fft_weight

    def inputs(self, y: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """What the encoder reads: ``y``, or ``[y, x̂₀]`` for a two-stage model (with a clear error if
        ``first`` is missing, superfluous or of another shape)."""
        y = check_image(y, "y")
        check_channels(y, 1, "AdaRevD")
        check_model_dtype(y, self, "AdaRevD")
        if not self.two_stage:
            if first is not None:
                raise ValueError("this AdaRevD reads y alone (two_stage=False): do not pass first.")
            return y
        if first is None:
            raise ValueError("this AdaRevD corrects a first estimate (two_stage=True): pass first=x̂₀, blind TV's "
                             "estimate of y, e.g. deblur_edu.bench.methods.get_method('blind-tv')(y, None, 0.0).")
        first = check_image(first, "first", value_range=False)  # a first estimate may overshoot [0, 1]
        if first.shape != y.shape or first.dtype != y.dtype or first.device != y.device:
            raise ValueError(f"first must be like y: shape {tuple(y.shape)}, {y.dtype} on {y.device}; got shape "
                             f"{tuple(first.shape)}, {first.dtype} on {first.device}.")
        return torch.cat([y, first], dim=1)

    def estimates(self, y: torch.Tensor, n: int | None = None, first: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``[x̂_1, …, x̂_n]`` (all sub-decoders by default)."""
        return self.decoder(self.inputs(y, first), n)

    def classify(self, y: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """The classifier's predicted degradation class of each image (or tile) of ``y``."""
        return self.classifier(self.decoder.encode(self.inputs(y, first))[1][-1]).argmax(1)

    def forward(self, y: torch.Tensor, k: torch.Tensor | None = None,
                sharp: torch.Tensor | None = None, first: torch.Tensor | None = None) -> torch.Tensor:
        """Deblur ``y`` (``k`` ignored: blind; ``first``: x̂₀ of a two-stage model), or with ``sharp`` return
        the training loss."""
        inputs = self.inputs(y, first)
        if sharp is None:
            return self.decoder(inputs)[-1]
        encoded = self.decoder.encode(inputs)
        loss = multi_decoder_loss(self.decoder(inputs, encoded=encoded), sharp, self.fft_weight)
        if self.classifier_weight > 0:
            logits = self.classifier(encoded[1][-1])
            loss = loss + self.classifier_weight * F.cross_entropy(logits, degradation_class(y, sharp, self.thresholds))
        return loss
